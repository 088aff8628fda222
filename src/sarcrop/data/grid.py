"""The raster grid every stage agrees on: CRS, affine transform and shape."""

from __future__ import annotations

from dataclasses import dataclass

from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def resolution(self) -> tuple[float, float]:
        return (abs(self.transform.a), abs(self.transform.e))

    @property
    def metre_pixels(self) -> float | None:
        """The side of a square pixel in metres on a projected grid in metres (else None)."""
        x, y = self.resolution
        metric = self.crs.is_projected and self.crs.linear_units in ("metre", "meter")
        return float(x) if metric and x == y else None

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in grid CRS units."""
        left, top = self.transform.c, self.transform.f
        right = left + self.transform.a * self.width
        bottom = top + self.transform.e * self.height
        return (left, min(bottom, top), right, max(bottom, top))

    def window_grid(self, window: Window) -> Grid:
        """The grid of a window of this grid."""
        shifted = self.transform @ Affine.translation(window.col_off, window.row_off)
        return Grid(self.crs, shifted, int(window.width), int(window.height))

    def same_as(self, other: Grid, tolerance: float = 1e-6) -> bool:
        return (
            self.crs == other.crs
            and self.width == other.width
            and self.height == other.height
            and self.transform.almost_equals(other.transform, precision=tolerance)
        )

    def fractional_shift(self, other: Grid) -> float:
        """How far ``other``'s pixels lie off this grid (same CRS and pixel size), in CRS
        units: 0 for a shift of whole pixels, which moves only the extent."""
        offsets = [
            (other.transform.c - self.transform.c) / self.transform.a,
            (other.transform.f - self.transform.f) / self.transform.e,
        ]
        return max(abs(x - round(x)) for x in offsets) * self.resolution[0]

    def to_dict(self) -> dict[str, object]:
        """JSON-safe form, stored in dataset and checkpoint metadata."""
        return {
            "crs": self.crs.to_wkt(),
            "transform": list(self.transform)[:6],
            "width": self.width,
            "height": self.height,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Grid:
        transform, width, height = data["transform"], data["width"], data["height"]
        assert isinstance(transform, list | tuple)
        assert isinstance(width, int) and isinstance(height, int)
        return cls(CRS.from_user_input(data["crs"]), Affine(*transform[:6]), width, height)

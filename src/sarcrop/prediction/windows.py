"""Window layout and blending weights for overlapping-window prediction.

Windows of ``window × window`` pixels are placed every ``stride = window - overlap`` pixels
from the top-left corner; the last row/column may extend past the area and is padded (with no
data), so every window has the same shape and areas smaller than a window work too. Requiring
``overlap <= window // 2`` means each window row ("strip") overlaps only its two neighbours:
a strip's rows split into a *head* shared with the strip above, a *body* only it covers and a
*tail* shared with the strip below. That is what lets strips be computed independently (on any
process) and merged in a fixed order with only two strips in memory.

Blending uses a separable raised-cosine ramp over the overlap: two overlapping windows' weights
sum to exactly one across the shared band, and every weight is > 0, so the weight-normalised
mosaic is seamless and defined everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from rasterio.windows import Window


def ramp(window: int, overlap: int) -> np.ndarray:
    """1-D blending weights: a sin² rise over ``overlap`` pixels at each end, 1 in between."""
    weights = np.ones(window, dtype=np.float32)
    if overlap > 0:
        rise = np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / overlap) ** 2
        weights[:overlap] = rise
        weights[window - overlap :] = rise[::-1]
    return weights


def blend_weights(window: int, overlap: int) -> np.ndarray:
    """2-D separable weights ``(window, window)``, all > 0."""
    r = ramp(window, overlap)
    return np.outer(r, r).astype(np.float32)


@dataclass(frozen=True)
class StripRows:
    """Row ranges of one strip in area coordinates (half-open, clipped to the area)."""

    start: int  # first row of the strip's windows (may be past the last area row: never)
    head: tuple[int, int]  # rows shared with the strip above (empty for the first strip)
    body: tuple[int, int]  # rows only this strip covers
    tail: tuple[int, int]  # rows shared with the strip below (empty for the last strip)


@dataclass(frozen=True)
class WindowLayout:
    """Overlapping windows over a ``height × width`` area, grouped into strips (window rows)."""

    height: int
    width: int
    window: int = 256
    overlap: int = 32

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"area must be at least 1×1 pixel, got {self.height}×{self.width}")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if not 0 <= self.overlap <= self.window // 2:
            raise ValueError(
                f"overlap must be between 0 and window/2 = {self.window // 2}, got {self.overlap}"
            )

    @property
    def stride(self) -> int:
        return self.window - self.overlap

    def _count(self, size: int) -> int:
        return 1 + max(0, math.ceil((size - self.window) / self.stride))

    @property
    def n_strips(self) -> int:
        return self._count(self.height)

    @property
    def n_cols(self) -> int:
        return self._count(self.width)

    @property
    def n_windows(self) -> int:
        return self.n_strips * self.n_cols

    @cached_property
    def weights(self) -> np.ndarray:
        return blend_weights(self.window, self.overlap)

    def col_starts(self) -> list[int]:
        return [j * self.stride for j in range(self.n_cols)]

    def strip_width(self) -> int:
        """Width of a strip's accumulator: every window fits, padding included."""
        return (self.n_cols - 1) * self.stride + self.window

    def strip(self, index: int) -> StripRows:
        if not 0 <= index < self.n_strips:
            raise IndexError(f"strip {index} out of range 0..{self.n_strips - 1}")
        start = index * self.stride
        last = index == self.n_strips - 1

        def clip(a: int, b: int) -> tuple[int, int]:
            return (min(a, self.height), min(b, self.height))

        head_end = start + (self.overlap if index > 0 else 0)
        body_end = start + (self.window if last else self.stride)
        return StripRows(
            start=start,
            head=clip(start, head_end),
            body=clip(head_end, body_end),
            tail=clip(body_end, start + self.window) if not last else clip(body_end, body_end),
        )

    def read_window(self, strip: int, first_col: int, n: int) -> tuple[Window, Window]:
        """Area window to read for ``n`` windows from column index ``first_col`` of ``strip``.

        Returns ``(read, full)``: ``read`` is clipped to the area, ``full`` is the unclipped
        block (``window`` rows) whose remainder is padding.
        """
        row = strip * self.stride
        col = first_col * self.stride
        full = Window(col, row, (n - 1) * self.stride + self.window, self.window)
        read = Window(
            col, row, min(full.width, self.width - col), min(full.height, self.height - row)
        )
        return read, full

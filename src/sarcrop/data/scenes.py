"""One reader for every Sentinel-1 layout.

:func:`open_scenes` takes a folder, glob, file list, netCDF/Zarr cube or STAC source, asks each
registered layout whether it recognises the source, and returns a :class:`SceneStack`: a lazily
read ``(time, band, y, x)`` cube with acquisition times, band names, grid and units. Data is only
read by :meth:`SceneStack.read`, one window at a time, so any area size streams.

A new layout plugs in by subclassing :class:`Layout` and decorating it with
:func:`register_layout`; nothing else in sarcrop changes.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from rasterio.windows import Window

from sarcrop.data.grid import Grid
from sarcrop.errors import InputDataError

Units = Literal["db", "linear"]
Source = str | Path | Sequence[str | Path]


@dataclass(frozen=True)
class Acquisition:
    """Metadata of one acquisition (one time slice of a stack)."""

    time: dt.datetime
    orbit: Literal["ascending", "descending"] | None = None
    relative_orbit: int | None = None
    platform: str | None = None
    source: str = ""


@dataclass
class SceneStack(ABC):
    """A lazily read ``(time, band, y, x)`` backscatter cube on one grid.

    ``read`` returns float32 with NaN wherever the input had nodata, NaN or Inf, in the stack's
    ``units``. Acquisitions are sorted by time.
    """

    grid: Grid
    acquisitions: list[Acquisition]
    bands: tuple[str, ...]
    units: Units
    description: str = ""
    attrs: dict[str, object] = field(default_factory=dict)

    @property
    def times(self) -> list[dt.datetime]:
        return [a.time for a in self.acquisitions]

    @abstractmethod
    def read(
        self,
        time_indices: Sequence[int],
        bands: Sequence[str],
        window: Window | None = None,
    ) -> np.ndarray:
        """Read ``(len(time_indices), len(bands), h, w)`` float32, NaN for missing data."""

    def require_bands(self, bands: Sequence[str]) -> None:
        missing = [b for b in bands if b not in self.bands]
        if missing:
            raise InputDataError(
                f"missing band(s) {', '.join(missing)}: found {', '.join(self.bands) or 'none'}",
                self.description,
            )

    def select(self, keep: Callable[[Acquisition], bool]) -> SceneStack:
        """A view of this stack keeping only the acquisitions for which ``keep`` is true."""
        return _Subset(self, [i for i, a in enumerate(self.acquisitions) if keep(a)])


@dataclass
class _Subset(SceneStack):
    def __init__(self, parent: SceneStack, indices: list[int]) -> None:
        super().__init__(parent.grid, [parent.acquisitions[i] for i in indices], parent.bands,
                         parent.units, parent.description, dict(parent.attrs))
        self._parent = parent
        self._indices = indices

    def read(self, time_indices: Sequence[int], bands: Sequence[str],
             window: Window | None = None) -> np.ndarray:
        return self._parent.read([self._indices[i] for i in time_indices], bands, window)


class Layout(ABC):
    """A way Sentinel-1 data can be laid out on disk (or in a catalog)."""

    name: str = ""
    description: str = ""

    @abstractmethod
    def detect(self, paths: list[Path], source: Source) -> bool:
        """Whether this layout recognises the resolved input paths."""

    @abstractmethod
    def open(self, paths: list[Path], source: Source, **options: object) -> SceneStack:
        """Open the input as a stack (lazily: no pixel data is read here)."""


LAYOUTS: list[Layout] = []


def register_layout(cls: type[Layout]) -> type[Layout]:
    """Class decorator adding a layout to the detection order (first match wins)."""
    LAYOUTS.append(cls())
    return cls

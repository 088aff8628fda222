"""Window layout, blocks and blending weights for overlapping-window prediction.

Windows of ``window × window`` pixels are placed every ``stride = window - overlap`` pixels
from the top-left corner; the last row/column may extend past the area and is padded (with no
data), so every window has the same shape and areas smaller than a window work too.

Windows are grouped into *blocks*: ``block_rows`` consecutive window rows by ``block_windows``
consecutive window columns. A block is the unit of work: it is computed independently (on any
process) and stored as the weighted probability sum over its extent. Its size depends on the
window, overlap, ``block_rows`` and ``block_windows`` only, never on the area, which is what
keeps memory flat for areas of any size. Small windows want blocks of several window rows: each
block reads a strip of every scene, and strips as high as a 16 px window made reading cost as
much as the model. Requiring ``overlap <= window // 2`` means a pixel is covered by at most two
window rows and two window columns, so at most four blocks contribute to any output pixel.

Blending uses a separable raised-cosine ramp over the overlap: two overlapping windows' weights
sum to exactly one across the shared band, and every weight is > 0, so the weight-normalised
mosaic is seamless and defined everywhere. Because the weights are separable and every window
covering a pixel with data is predicted, the weight total at a pixel is the product of a row
profile and a column profile (:meth:`WindowLayout.weight_profile`) and need not be stored.
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
class Block:
    """``rows × cols`` windows from window row ``first_row`` and window column ``first_col`` on.

    ``extent`` is the area window the block's windows cover, padding past the area included.
    """

    index: int
    first_row: int
    first_col: int
    rows: int
    cols: int
    extent: Window

    @property
    def n(self) -> int:
        """Windows in the block."""
        return self.rows * self.cols

    def offsets(self, stride: int) -> list[tuple[int, int]]:
        """Each window's top-left pixel inside the extent, row-major (the order of computing
        and of adding up)."""
        return [(r * stride, c * stride) for r in range(self.rows) for c in range(self.cols)]


@dataclass(frozen=True)
class WindowLayout:
    """Overlapping windows over a ``height × width`` area, grouped into blocks."""

    height: int
    width: int
    window: int = 256
    overlap: int = 32
    block_windows: int = 8
    block_rows: int = 1

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"area must be at least 1×1 pixel, got {self.height}×{self.width}")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if not 0 <= self.overlap <= self.window // 2:
            raise ValueError(
                f"overlap must be between 0 and window/2 = {self.window // 2}, got {self.overlap}"
            )
        if self.block_windows < 1:
            raise ValueError(f"block_windows must be >= 1, got {self.block_windows}")
        if self.block_rows < 1:
            raise ValueError(f"block_rows must be >= 1, got {self.block_rows}")

    @property
    def stride(self) -> int:
        return self.window - self.overlap

    def _count(self, size: int) -> int:
        return 1 + max(0, math.ceil((size - self.window) / self.stride))

    @property
    def n_rows(self) -> int:
        """Window rows."""
        return self._count(self.height)

    @property
    def n_cols(self) -> int:
        """Window columns."""
        return self._count(self.width)

    @property
    def n_windows(self) -> int:
        return self.n_rows * self.n_cols

    @property
    def blocks_across(self) -> int:
        """Blocks across the area."""
        return -(-self.n_cols // self.block_windows)

    @property
    def blocks_down(self) -> int:
        """Blocks down the area."""
        return -(-self.n_rows // self.block_rows)

    @property
    def n_blocks(self) -> int:
        return self.blocks_down * self.blocks_across

    @property
    def max_block_windows(self) -> int:
        """Windows in the largest block."""
        return min(self.block_windows, self.n_cols) * min(self.block_rows, self.n_rows)

    @cached_property
    def weights(self) -> np.ndarray:
        return blend_weights(self.window, self.overlap)

    def block(self, index: int) -> Block:
        if not 0 <= index < self.n_blocks:
            raise IndexError(f"block {index} out of range 0..{self.n_blocks - 1}")
        down, panel = divmod(index, self.blocks_across)
        row, col = down * self.block_rows, panel * self.block_windows
        rows = min(self.block_rows, self.n_rows - row)
        cols = min(self.block_windows, self.n_cols - col)
        extent = Window(
            col * self.stride,
            row * self.stride,
            (cols - 1) * self.stride + self.window,
            (rows - 1) * self.stride + self.window,
        )
        return Block(index, row, col, rows, cols, extent)

    def blocks(self) -> list[Block]:
        return [self.block(i) for i in range(self.n_blocks)]

    def blocks_in(self, rows: tuple[int, int], cols: tuple[int, int]) -> list[Block]:
        """Blocks whose extent meets the area rows ``[r0, r1)`` × cols ``[c0, c1)``, in order."""
        s, w = self.stride, self.window
        first_row = max(0, (rows[0] - w) // s + 1)
        last_row = min(self.n_rows - 1, (rows[1] - 1) // s)
        first_col = max(0, (cols[0] - w) // s + 1)
        last_col = min(self.n_cols - 1, (cols[1] - 1) // s)
        return [
            self.block(down * self.blocks_across + panel)
            for down in range(first_row // self.block_rows, last_row // self.block_rows + 1)
            for panel in range(first_col // self.block_windows, last_col // self.block_windows + 1)
        ]

    def weight_profile(self, start: int, stop: int, size: int) -> np.ndarray:
        """Sum of the 1-D ramps of all windows covering positions ``[start, stop)``.

        ``size`` is the area's height (for rows) or width (for columns). The weight total of
        pixel ``(r, c)`` is ``profile_rows[r] * profile_cols[c]``.
        """
        out = np.zeros(stop - start, dtype=np.float32)
        r = ramp(self.window, self.overlap)
        for k in range(max(0, (start - self.window) // self.stride + 1), self._count(size)):
            a = k * self.stride
            if a >= stop:
                break
            lo, hi = max(a, start), min(a + self.window, stop)
            out[lo - start : hi - start] += r[lo - a : hi - a]
        return out

    def read_window(self, block: Block) -> Window:
        """``block.extent`` clipped to the area: what to read from the scenes."""
        e = block.extent
        return Window(
            e.col_off,
            e.row_off,
            min(e.width, self.width - e.col_off),
            min(e.height, self.height - e.row_off),
        )

"""What a decoded frame says about a camera: black, dusty lens, frozen. NumPy only, on a small grey copy.

:func:`measure` reduces one frame (a grey image, :data:`ANALYSIS_WIDTH` pixels wide) to four
numbers; :class:`PictureJudge` turns a run of them into a verdict under :class:`HealthRules`:

- ``black``: at least ``black_fraction`` of the picture darker than ``black_luma``
  (burned-in text, a clock, stays allowed);
- ``obscured``: the picture has lost its edges (``sharpness``, the share of 16×16 blocks
  holding a step of at least ``edge_step`` between neighbouring pixels, below
  ``min_sharpness``: a burned-in clock keeps a few) or its contrast (luma standard
  deviation below ``min_contrast``): dust, mud or water on the lens, a lens out of focus;
- ``frozen``: less than ``frozen_changed_fraction`` of the picture (blocks of 16×16) changed
  from one sampled frame to the next, for ``frozen_after_s`` seconds: a hung image
  pipeline (the encoder goes on; burned-in clocks may still tick). A camera looking at a
  scene where nothing moves at all looks the same: keep such cameras' rules off ``frozen``;
- else ``ok``.

The order is the order of that list: a black picture has no edges either, a dusty one little motion.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

ANALYSIS_WIDTH = 320  # frames are scaled to this width (keeping their aspect) before measuring
BLOCK = 16  # pixels (of the analysis image) per side of a motion block
BLOCK_CHANGED_LUMA = 3.0  # a block changed when its mean absolute difference exceeds this
VERDICTS = ("ok", "frozen", "black", "obscured")

if TYPE_CHECKING:  # NumPy (~14 MB) is loaded by the first frame measured: a gateway without cameras never needs it
    import numpy as np


class HealthRules(BaseModel):
    """Thresholds of the picture checks and of the stream's (the site file's ``health_rules``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    black_luma: float = Field(24.0, ge=0, le=255, description="a pixel darker than this (0-255) is black")
    black_fraction: float = Field(0.9, gt=0, le=1, description="share of black pixels that makes the picture black")
    edge_step: float = Field(24.0, gt=0, le=255, description="a luma step between neighbours (analysis image) "
                                                             "that makes an edge")
    min_sharpness: float = Field(0.2, ge=0, le=1, description="share of blocks with an edge below which the lens "
                                                               "is obscured")
    min_contrast: float = Field(12.0, ge=0, description="luma standard deviation below which the lens is obscured")
    frozen_changed_fraction: float = Field(0.1, gt=0, le=1, description="less of the picture changed than this: "
                                                                        "no motion")
    frozen_after_s: float = Field(8.0, gt=0, description="no motion this long: frozen")
    stall_s: float = Field(1.0, gt=0, description="a gap between video packets longer than this is a stall")
    min_kbps: float | None = Field(None, gt=0, description="below this bit rate the stream is reported short of it")


@dataclass(frozen=True)
class Picture:
    """One sampled frame's measurements (analysis image, luma 0-255)."""

    luma: float  # mean
    contrast: float  # standard deviation
    sharpness: float  # share of blocks holding an edge
    dark: float  # share of pixels below the rules' black_luma
    blocks: np.ndarray  # mean luma per motion block, for the next frame's comparison


def measure(grey: np.ndarray, black_luma: float = 24.0, edge_step: float = 24.0) -> Picture:
    """The measurements of a grey frame (2-D uint8, ideally :data:`ANALYSIS_WIDTH` wide)."""
    import numpy as np
    image = grey.astype(np.float32)
    rows, cols = image.shape[0] // BLOCK, image.shape[1] // BLOCK
    if not rows or not cols:
        raise ValueError(f"a frame of {image.shape[1]}x{image.shape[0]} is too small to judge")
    tiled = image[:rows * BLOCK, :cols * BLOCK]
    step = np.maximum(np.abs(np.diff(tiled, axis=1, append=tiled[:, -1:])),
                      np.abs(np.diff(tiled, axis=0, append=tiled[-1:, :])))
    edges = _per_block(step, rows, cols).max(axis=(1, 3)) >= edge_step
    return Picture(luma=float(image.mean()), contrast=float(image.std()), sharpness=float(edges.mean()),
                   dark=float((image < black_luma).mean()), blocks=_per_block(tiled, rows, cols).mean(axis=(1, 3)))


def _per_block(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    return image.reshape(rows, BLOCK, cols, BLOCK)


def changed_fraction(before: Picture, after: Picture) -> float:
    """Share of motion blocks whose mean luma moved by more than :data:`BLOCK_CHANGED_LUMA`."""
    if before.blocks.shape != after.blocks.shape or not after.blocks.size:
        return 1.0
    import numpy as np
    return float((np.abs(after.blocks - before.blocks) > BLOCK_CHANGED_LUMA).mean())


class PictureJudge:
    """Verdicts on a camera's sampled frames, one after another (``judge(picture, t)``, t in seconds)."""

    def __init__(self, rules: HealthRules):
        self.rules = rules
        self.last: Picture | None = None
        self.motion: float | None = None  # changed fraction at the last sample
        self._last_t = 0.0
        self._still_since: float | None = None

    def judge(self, picture: Picture, t: float) -> str:
        rules = self.rules
        if self.last is not None:
            self.motion = changed_fraction(self.last, picture)
            if self.motion >= rules.frozen_changed_fraction:
                self._still_since = None
            elif self._still_since is None:
                self._still_since = self._last_t  # nothing moved since the sample before
        self.last, self._last_t = picture, t
        if picture.dark >= rules.black_fraction:
            return "black"
        if picture.sharpness < rules.min_sharpness or picture.contrast < rules.min_contrast:
            return "obscured"
        if self._still_since is not None and t - self._still_since >= rules.frozen_after_s:
            return "frozen"
        return "ok"

    def reset(self) -> None:
        """A new connection: motion is measured afresh."""
        self.last, self.motion, self._still_since = None, None, None

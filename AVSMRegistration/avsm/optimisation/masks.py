"""Masks of the similarity: where the images are compared (fixed mask on the fixed side, moving mask on the moving
side), as users of elastix and ANTs give them, e.g. to leave a lesion, a resection or the neck out.

A mask is a ``1 x 1 x D x H x W`` tensor in [0, 1] on its image's working grid (1 inside). Each iteration weighs the
similarity's windows by the fixed mask times the moving mask pulled back through the current map (no gradient
flows through the masks: they choose where to look, not where to move).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..geometry import Grid
from ..maps import warp_image_at
from .pyramid import downsample


@dataclass(frozen=True)
class SimilarityMasks:
    """Fixed mask on the fixed working grid and moving mask on the moving working grid; either may be None."""

    fixed: Optional[torch.Tensor] = None
    moving: Optional[torch.Tensor] = None

    def __bool__(self) -> bool:
        return self.fixed is not None or self.moving is not None

    def at_scale(self, fixed_grid: Grid, moving_grid: Grid, scale: float) -> "SimilarityMasks":
        """The masks on the grids of an image pyramid level (the fraction of each coarse voxel inside)."""
        return SimilarityMasks(None if self.fixed is None else downsample(self.fixed, fixed_grid, scale)[0],
                               None if self.moving is None else downsample(self.moving, moving_grid, scale)[0])

    def to(self, device: torch.device) -> "SimilarityMasks":
        return SimilarityMasks(None if self.fixed is None else self.fixed.to(device),
                               None if self.moving is None else self.moving.to(device))

    def weight(self, moving_grid: Grid, coordinates: torch.Tensor) -> Optional[torch.Tensor]:
        """Voxel weights on the fixed side for a map given as the moving grid's ``grid_sample`` coordinates of each
        fixed voxel (``1 x D x H x W x 3``, :func:`avsm.geometry.physical_to_normalised`)."""
        if not self:
            return None
        with torch.no_grad():
            weight = self.fixed
            if self.moving is not None:
                pulled = warp_image_at(self.moving, moving_grid, coordinates.detach())
                weight = pulled if weight is None else weight * pulled
        return weight

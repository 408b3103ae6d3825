"""Masks of the similarity: where the images are compared (fixed mask on the fixed side, moving mask on the moving
side), as users of elastix and ANTs give them, e.g. to leave a lesion, a resection or the neck out.

A mask is a ``1 x 1 x D x H x W`` tensor in [0, 1] on its image's working grid (1 inside). Each iteration weighs the
similarity's voxels by the fixed mask times the moving mask pulled back through the current map.

The affine stage also multiplies in each image's field of view (:func:`field_of_view`): where a scan was not
acquired (beyond an oblique slab, below a cut above the chin) is unknown, not dark, and must not pull the overlap.
There the pulled-back moving mask keeps its gradient, so that the similarity's gradient is the exact derivative of
the masked similarity, voxels entering and leaving the overlap included: with detached weights it was 2-3 times
too steep where a partial field of view meets the head, and the affine optimisation walked away from the right
answer on whole-head pairs. The deformable stages take the masks without gradient (they choose where to look, not
where to move).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

import numpy as np

from ..geometry import Grid, physical_points
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

    def times(self, other: "SimilarityMasks") -> "SimilarityMasks":
        """Both masks multiplied side by side (a missing mask counts as all ones)."""
        def product(a: Optional[torch.Tensor], b: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            return b if a is None else a if b is None else a * b
        return SimilarityMasks(product(self.fixed, other.fixed), product(self.moving, other.moving))

    def to(self, device: torch.device) -> "SimilarityMasks":
        return SimilarityMasks(None if self.fixed is None else self.fixed.to(device),
                               None if self.moving is None else self.moving.to(device))

    def weight(self, moving_grid: Grid, coordinates: torch.Tensor, differentiable: bool = False
               ) -> Optional[torch.Tensor]:
        """Voxel weights on the fixed side for a map given as the moving grid's ``grid_sample`` coordinates of each
        fixed voxel (``1 x D x H x W x 3``, :func:`avsm.geometry.physical_to_normalised`).

        By default no gradient flows through the weights. ``differentiable``: the moving mask pulled back keeps its
        gradient with respect to ``coordinates``, so that the similarity's gradient also counts the voxels that
        enter or leave the compared region as the map moves (the exact derivative of a masked similarity)."""
        if not self:
            return None
        with torch.set_grad_enabled(differentiable and torch.is_grad_enabled()):
            weight = self.fixed
            if self.moving is not None:
                pulled = warp_image_at(self.moving, moving_grid, coordinates if differentiable else coordinates.detach())
                weight = pulled if weight is None else weight * pulled
        return weight


def field_of_view(image_grid: Grid, working_grid: Grid) -> torch.Tensor:
    """``1 x 1 x D x H x W`` on ``working_grid``: the part of each voxel inside the field of view of ``image_grid``
    (its box of voxels, any direction and spacing; 1 inside, 0 beyond, linear across the half voxel at the box's
    face). On the moving side it also marks points that map beyond the image as not compared, as ITK's metrics
    do."""
    to_index = torch.as_tensor(np.linalg.inv(image_grid.index_to_physical_matrix()))
    index = to_index[:3, :3] @ physical_points(working_grid, dtype=torch.float64).reshape(3, -1) + to_index[:3, 3:]
    size = torch.as_tensor(image_grid.size_xyz, dtype=torch.float64)[:, None]
    depth = torch.minimum(index + 0.5, size - 0.5 - index).min(dim=0).values  # voxels inside the box's nearest face
    return (depth + 0.5).clamp(0.0, 1.0).float().reshape(1, 1, *working_grid.shape)

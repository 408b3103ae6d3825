"""Does a deformation bring the images closer than the affine alone? A network met outside the domain it was trained
on (a whole head, another contrast, another organ) can warp the moving image away from the fixed one, and an
optimisation of local correlation can do so across a change of contrast; the pipeline then keeps what was better.

Every candidate is scored by the same judge, independent of what each stage optimised: normalised mutual information
(no assumption on contrast) at the images' own resolution, on a fixed pseudo-random sample of fixed voxels, counted
where the moving image was acquired and inside the user's masks. The working grids are too coarse for this: there a
deformation that blurs fine anatomy into place can look as good as the right one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk
import torch

from ..geometry import Grid, image_to_tensor, physical_to_normalised
from ..losses import MutualInformation
from ..maps import affine_after_map, inside_box, warp_image_at
from .affine_opt import AffineParameters

SAMPLES = 50_000


@dataclass
class DeformationJudge:
    """Fixed voxels (``points``: ``1 x 3 x N x 1 x 1`` LPS mm, ``values`` and mask ``weights`` of ``N``) and the
    moving image at full resolution (``1 x 1 x d x h x w`` on ``moving_grid``, its mask likewise or None)."""

    points: torch.Tensor
    values: torch.Tensor
    weights: Optional[torch.Tensor]
    moving: torch.Tensor
    moving_grid: Grid
    moving_mask: Optional[torch.Tensor]

    @classmethod
    def of(cls, fixed: sitk.Image, moving: sitk.Image, fixed_mask: Optional[sitk.Image] = None,
           moving_mask: Optional[sitk.Image] = None, samples: int = SAMPLES) -> "DeformationJudge":
        """From the normalised images (values in [0, 1]) and the user's masks on their images' grids."""
        grid = Grid.of_image(fixed)
        count = min(samples, grid.num_voxels)
        flat = np.sort(np.random.default_rng(grid.num_voxels).choice(grid.num_voxels, count, replace=False))
        iz, iy, ix = np.unravel_index(flat, grid.shape)
        index = np.stack([ix, iy, iz, np.ones_like(ix)]).astype(np.float64)
        points = torch.as_tensor(grid.index_to_physical_matrix()[:3] @ index, dtype=torch.float32)
        values = torch.as_tensor(sitk.GetArrayViewFromImage(fixed).reshape(-1)[flat].astype(np.float32))
        weights = None
        if fixed_mask is not None:
            weights = torch.as_tensor((sitk.GetArrayViewFromImage(fixed_mask).reshape(-1)[flat] > 0).astype(np.float32))
        return cls(points.reshape(1, 3, count, 1, 1), values, weights, image_to_tensor(moving), Grid.of_image(moving),
                   None if moving_mask is None else image_to_tensor(sitk.Cast(moving_mask > 0, sitk.sitkFloat32)))

    def losses(self, affine: AffineParameters, pullback_maps: Sequence[Optional[torch.Tensor]],
               map_grid: Optional[Grid]) -> list[float]:
        """The mutual-information loss (lower is closer) of the moving image pulled back through ``affine`` after each
        map of ``pullback_maps`` (psi^{-1}, ``1 x 3 x d x h x w`` LPS points on ``map_grid``; None: the affine
        alone)."""
        loss = MutualInformation().against(self.values)
        matrix, translation = affine.tensors(self.points.device)
        scores = []
        with torch.no_grad():
            for pullback in pullback_maps:
                scores.append(float(loss(*self.warped_at(affine_after_map(matrix, translation, self.points, pullback,
                                                                          map_grid)))))
        return scores

    def warped_at(self, moving_points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The moving image at ``moving_points`` (``1 x 3 x N x 1 x 1`` LPS mm, where the map sends the sampled fixed
        voxels) and each voxel's weight: where the moving image was acquired, inside the masks (``N`` each)."""
        coordinates = physical_to_normalised(moving_points, self.moving_grid)
        warped = warp_image_at(self.moving, self.moving_grid, coordinates)
        weight = (inside_box(coordinates, self.moving_grid).to(warped.dtype) if self.moving_mask is None
                  else warp_image_at(self.moving_mask, self.moving_grid, coordinates))
        if self.weights is not None:
            weight = weight * self.weights.reshape(weight.shape)
        return warped.reshape(-1), weight.reshape(-1)


"""Does a network's deformation bring the images closer than its affine alone? A network met outside the domain it
was trained on (a whole head, another contrast, another organ) can warp the moving image away from the fixed one;
the pipeline then keeps the affine and lets instance optimisation start from it.

Both candidates are scored with the deformable stages' own similarity (mk-LNCC on the working grids, the
instance optimisation's windows), restricted to ``masks`` as every optimisation is.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..geometry import Grid, physical_points, physical_to_normalised
from ..losses import MultiKernelLNCC
from ..maps import apply_affine, upsample_map, warp_image_at
from .affine_opt import AffineParameters
from .masks import SimilarityMasks
from .vsvf_opt import BRAIN_LNCC_SCALES, PriorDeformation


@dataclass(frozen=True)
class DeformationCheck:
    """The similarity loss (lower is closer) with the affine alone and with the deformation after it."""

    affine_loss: float
    deformed_loss: float

    @property
    def helps(self) -> bool:
        return self.deformed_loss < self.affine_loss


def check_deformation(fixed: torch.Tensor, fixed_grid: Grid, moving: torch.Tensor, moving_grid: Grid,
                      affine: AffineParameters, deformation: PriorDeformation,
                      masks: SimilarityMasks = SimilarityMasks()) -> DeformationCheck:
    """Score ``moving`` pulled back through ``affine`` alone and through ``affine`` after ``deformation.pullback_map``
    (psi^{-1}, physical points on ``deformation.grid``) against ``fixed``; images ``1 x 1 x D x H x W`` in [0, 1]."""
    loss = MultiKernelLNCC(BRAIN_LNCC_SCALES).against(fixed)
    matrix, translation = affine.tensors(fixed.device)
    inner = {"affine": physical_points(fixed_grid, device=fixed.device),
             "deformed": upsample_map(deformation.pullback_map.to(fixed.device), fixed_grid)}
    scores = {}
    with torch.no_grad():
        for name, points in inner.items():
            coordinates = physical_to_normalised(apply_affine(matrix, translation, points), moving_grid)
            scores[name] = float(loss(warp_image_at(moving, moving_grid, coordinates),
                                      masks.weight(moving_grid, coordinates)))
    return DeformationCheck(scores["affine"], scores["deformed"])

"""Engine maps -> ITK transforms (LPS mm, resampling direction: fixed points -> moving points).

* the affine part is an ``sitk.AffineTransform`` y = A x + b;
* the deformable part is a displacement field on the (coarse, axis-aligned) map grid. ITK interpolates
  displacement fields linearly, which is exactly how the engine upsamples its maps, so the exported
  transform reproduces the engine's warp;
* ``sitk.CompositeTransform([T1, T2])`` applies T2 first: the full transform is A ∘ psi^{-1} (the pull-back map
  psi^{-1} first) and the inverse is psi ∘ A^{-1} (the push-forward map psi last).
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch

from .geometry import Grid, physical_points
from .optimisation.affine_opt import AffineParameters


def affine_transform(affine: AffineParameters) -> sitk.AffineTransform:
    transform = sitk.AffineTransform(3)
    transform.SetMatrix([float(v) for v in affine.matrix.ravel()])
    transform.SetTranslation([float(v) for v in affine.translation])
    return transform


def displacement_field_transform(points: torch.Tensor, grid: Grid) -> sitk.DisplacementFieldTransform:
    """A map (``1 x 3 x D x H x W`` physical points, LPS mm, the image of each point of ``grid``) as an ITK
    displacement field transform."""
    identity = physical_points(grid, device=points.device, dtype=torch.float64)
    displacement = (points.double() - identity)[0].cpu().numpy()  # 3 x D x H x W, (x, y, z)
    field = sitk.GetImageFromArray(np.ascontiguousarray(np.moveaxis(displacement, 0, -1)), isVector=True)
    field = sitk.Cast(field, sitk.sitkVectorFloat64)
    grid.apply_to(field)
    return sitk.DisplacementFieldTransform(field)


def full_transform(affine: AffineParameters, pullback_map: torch.Tensor | None, grid: Grid | None) -> sitk.Transform:
    """A ∘ psi^{-1} (fixed -> moving), ``pullback_map`` psi^{-1} on ``grid``. Without it: the affine alone, as a
    composite."""
    parts = [affine_transform(affine)]
    if pullback_map is not None:
        parts.append(displacement_field_transform(pullback_map, grid))
    return sitk.CompositeTransform(parts)


def inverse_transform(affine: AffineParameters, pushforward_map: torch.Tensor | None,
                      grid: Grid | None) -> sitk.Transform:
    """psi ∘ A^{-1} (moving -> fixed), ``pushforward_map`` psi on ``grid``."""
    parts = []
    if pushforward_map is not None:
        parts.append(displacement_field_transform(pushforward_map, grid))
    parts.append(affine_transform(affine.inverse()))
    return sitk.CompositeTransform(parts)

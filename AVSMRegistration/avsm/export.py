"""Engine maps -> ITK transforms (LPS mm, resampling direction: fixed points -> moving points).

* the affine part is an ``sitk.AffineTransform`` y = A x + b;
* the deformable part is a displacement field on the (coarse, axis-aligned) map grid. ITK interpolates
  displacement fields linearly, which is exactly how the engine upsamples its maps, so the exported
  transform reproduces the engine's warp;
* ``sitk.CompositeTransform([T1, T2])`` applies T2 first: the full transform is A ∘ psi^{-1} and the
  inverse is psi ∘ A^{-1}.
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


def displacement_field_transform(deformation: torch.Tensor, grid: Grid) -> sitk.DisplacementFieldTransform:
    """A map (``1 x 3 x D x H x W`` points on ``grid``) as an ITK displacement field transform."""
    identity = physical_points(grid, device=deformation.device, dtype=torch.float64)
    displacement = (deformation.double() - identity)[0].cpu().numpy()  # 3 x D x H x W, (x, y, z)
    field = sitk.GetImageFromArray(np.ascontiguousarray(np.moveaxis(displacement, 0, -1)), isVector=True)
    field = sitk.Cast(field, sitk.sitkVectorFloat64)
    grid.apply_to(field)
    return sitk.DisplacementFieldTransform(field)


def full_transform(affine: AffineParameters, deformation: torch.Tensor | None, grid: Grid | None) -> sitk.Transform:
    """A ∘ psi^{-1} (fixed -> moving). Without a deformation: the affine alone, as a composite."""
    parts = [affine_transform(affine)]
    if deformation is not None:
        parts.append(displacement_field_transform(deformation, grid))
    return sitk.CompositeTransform(parts)


def inverse_transform(affine: AffineParameters, inverse_deformation: torch.Tensor | None, grid: Grid | None) -> sitk.Transform:
    """psi ∘ A^{-1} (moving -> fixed)."""
    parts = []
    if inverse_deformation is not None:
        parts.append(displacement_field_transform(inverse_deformation, grid))
    parts.append(affine_transform(affine.inverse()))
    return sitk.CompositeTransform(parts)

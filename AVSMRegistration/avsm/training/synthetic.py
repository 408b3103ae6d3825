"""Images synthesised from label maps, in the manner of SynthMorph (Hoffmann et al., IEEE TMI 2022).

From one label map on the training grid: a random affine and a random smooth diffeomorphism (a coarse
Gaussian velocity integrated by scaling and squaring) move the labels (nearest neighbour); each label gets
a random intensity; then a random blur, a multiplicative bias field, a gamma and Gaussian noise; the
image is normalised to [0, 1] and the background kept at 0 (like skull-stripped scans). Every draw comes
from the ``torch.Generator`` passed in, so a pair is a pure function of the step's seed.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..geometry import Grid, coarser_grid
from ..integrate import scaling_and_squaring
from ..maps import apply_affine, resample_map, warp_labels


def _uniform(generator: torch.Generator, low: float, high: float, size=()) -> torch.Tensor:
    return low + (high - low) * torch.rand(size, generator=generator, dtype=torch.float64)


def random_affine(generator: torch.Generator, max_rotation_deg: float, max_scale: float, max_shear: float,
                  max_shift_mm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, b) = rotation x scale x shear and a shift, about the physical origin (the grid centre)."""
    angles = _uniform(generator, -1.0, 1.0, (3,)) * math.radians(max_rotation_deg)
    cx, cy, cz = torch.cos(angles)
    sx, sy, sz = torch.sin(angles)
    one, zero = torch.ones(()), torch.zeros(())
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx]).reshape(3, 3).double()
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy]).reshape(3, 3).double()
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one]).reshape(3, 3).double()
    scale = torch.diag(torch.exp(_uniform(generator, -max_scale, max_scale, (3,))))
    shear = torch.eye(3, dtype=torch.float64) + torch.triu(_uniform(generator, -max_shear, max_shear, (3, 3)), 1)
    matrix = rz @ ry @ rx @ scale @ shear
    return matrix.float(), (_uniform(generator, -max_shift_mm, max_shift_mm, (3,))).float()


def random_deformation(generator: torch.Generator, grid: Grid, std_mm: float, control_points: int = 6) -> torch.Tensor:
    """exp(v) for a smooth random velocity: Gaussian noise on a coarse lattice, upsampled to half resolution."""
    map_grid = coarser_grid(grid, 2)
    noise = torch.randn((1, 3, control_points, control_points, control_points), generator=generator) * std_mm
    velocity = F.interpolate(noise, size=map_grid.shape, mode="trilinear", align_corners=True)
    return scaling_and_squaring(velocity, map_grid, 7), map_grid


def gaussian_blur(image: torch.Tensor, sigma_voxels: float) -> torch.Tensor:
    if sigma_voxels < 0.1:
        return image
    radius = max(int(math.ceil(2.5 * sigma_voxels)), 1)
    x = torch.arange(-radius, radius + 1, dtype=image.dtype)
    kernel = torch.exp(-x**2 / (2 * sigma_voxels**2))
    kernel = kernel / kernel.sum()
    out = image
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = kernel.numel()
        padding = [0, 0, 0]
        padding[axis] = radius
        out = F.conv3d(out, kernel.reshape(shape), padding=padding)
    return out


def synthesise(labels: torch.Tensor, grid: Grid, generator: torch.Generator, max_rotation_deg: float = 10.0,
               max_scale: float = 0.1, max_shear: float = 0.05, max_shift_mm: float = 6.0,
               deformation_std_mm: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(image ``1 x 1 x D x H x W`` in [0, 1], moved labels) from an integer label map on ``grid``."""
    matrix, translation = random_affine(generator, max_rotation_deg, max_scale, max_shear, max_shift_mm)
    deformation, map_grid = random_deformation(generator, grid, deformation_std_mm)
    phi = apply_affine(matrix, translation, resample_map(deformation, map_grid, grid))
    moved = warp_labels(labels.float(), grid, phi).round().long()
    lut = torch.rand(int(labels.max()) + 1, generator=generator)
    lut[0] = 0.0
    image = lut[moved]
    image = gaussian_blur(image, float(_uniform(generator, 0.0, 1.0)))
    bias = F.interpolate(torch.randn((1, 1, 4, 4, 4), generator=generator) * 0.3, size=grid.shape, mode="trilinear",
                         align_corners=True)
    image = image * torch.exp(bias)
    image = image / image.max().clamp_min(1e-6)
    image = image.clamp_min(0) ** float(torch.exp(torch.randn((), generator=generator) * 0.25))
    image = image + torch.randn(image.shape, generator=generator) * float(_uniform(generator, 0.0, 0.05))
    image = image.clamp(0.0, 1.0) * (moved > 0)
    return image.float(), moved.to(torch.int16)

"""Image pyramids on working grids (corner voxel centres kept, see geometry.coarser_grid)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..geometry import Grid, coarser_grid


def downsample(image: torch.Tensor, grid: Grid, scale: float) -> tuple[torch.Tensor, Grid]:
    """Blur and resample ``image`` (``B x C x D x H x W`` on ``grid``) to ``scale`` times as many voxels per axis."""
    if scale >= 1.0:
        return image, grid
    coarse = coarser_grid(grid, 1.0 / scale)
    blurred = image
    factor = 1.0 / scale
    while factor > 1.0 + 1e-6:
        blurred = F.avg_pool3d(blurred, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        factor /= 2.0
    resized = F.interpolate(blurred, size=coarse.shape, mode="trilinear", align_corners=True)
    return resized, coarse

"""Jacobian determinant of a physical map and fold detection (the full 3x3 determinant, mm/mm).

The AVSM authors' code counts only the product of the diagonal partials; we compute the full
determinant of the Jacobian of phi with respect to physical fixed coordinates.
"""
from __future__ import annotations

import numpy as np
import torch

from .geometry import Grid, spatial_derivative_matrix


# D-slices per block of the determinant loop: ~128k voxels keep the 9 difference fields in cache.
BLOCK_VOXELS = 131_072


def det_jacobian(phi: torch.Tensor, grid: Grid) -> torch.Tensor:
    """``B x 3 x D x H x W`` map on ``grid`` -> ``B x 1 x D x H x W`` det(d phi / d x).

    d phi / d x = (d phi / d index) (d index / d x), and the second factor is one constant matrix of the
    grid (spacing and direction), so det J = det(d phi / d index) * det(d index / d x): the per-voxel work
    is one 3x3 determinant of index differences, central inside and one-sided at the faces (the rule of
    ``torch.gradient(edge_order=1)``). The one-sided faces come from a linearly extrapolated one-voxel pad
    (a central difference across ``2 p_0 - p_1, p_0, p_1`` is ``p_1 - p_0``); the determinant is then
    taken block by block along D so that its difference fields stay small. Every axis needs >= 2 voxels.
    """
    if phi.dim() != 5 or phi.shape[1] != 3 or min(phi.shape[2:]) < 2:
        raise ValueError(f"det_jacobian needs a B x 3 x D x H x W map with D, H, W >= 2, got {tuple(phi.shape)}")
    padded = _pad_linear(phi)
    b, _, d, h, w = phi.shape
    det = phi.new_empty((b, 1, d, h, w))
    block = max(BLOCK_VOXELS // (h * w), 1)
    for start in range(0, d, block):
        stop = min(start + block, d)
        z = slice(start + 1, stop + 1)
        # twice the derivatives along i_x, i_y, i_z: B x 3 (components) x n x H x W
        dx = padded[:, :, z, 1:-1, 2:] - padded[:, :, z, 1:-1, :-2]
        dy = padded[:, :, z, 2:, 1:-1] - padded[:, :, z, :-2, 1:-1]
        dz = padded[:, :, start + 2:stop + 2, 1:-1, 1:-1] - padded[:, :, start:stop, 1:-1, 1:-1]
        det[:, 0, start:stop] = _det_of_columns(dx, dy, dz)
    scale = float(np.linalg.det(spatial_derivative_matrix(grid))) / 8.0  # / 8: the three doubled columns
    return det.mul_(scale)


def det_jacobian_at_cell_corners(phi: torch.Tensor, grid: Grid) -> torch.Tensor:
    """``B x 3 x D x H x W`` map on ``grid`` -> ``B x 8 x (D-1) x (H-1) x (W-1)``: det(d phi / d x) of the trilinear
    interpolant of ``phi`` at the 8 corners of each cell, exactly.

    Inside a cell the interpolant's derivative along x at a corner is the cell's edge along x through that corner
    (trilinear interpolation is linear along each axis), so each corner's Jacobian has the three cell edges that
    meet there as columns. A map upsampled from ``grid`` (:func:`avsm.maps.upsample_map`) folds first at these
    corners, where the one-sided Jacobians of neighbouring cells differ and central differences average them away.
    """
    ex = phi[:, :, :, :, 1:] - phi[:, :, :, :, :-1]  # edges along x: B x 3 x D x H x (W-1)
    ey = phi[:, :, :, 1:] - phi[:, :, :, :-1]  # along y: B x 3 x D x (H-1) x W
    ez = phi[:, :, 1:] - phi[:, :, :-1]  # along z: B x 3 x (D-1) x H x W
    dets = []
    for k, j, i in ((k, j, i) for k in (0, 1) for j in (0, 1) for i in (0, 1)):  # the corner's offsets along z, y, x
        dx = ex[:, :, k:ex.shape[2] - 1 + k, j:ex.shape[3] - 1 + j, :]
        dy = ey[:, :, k:ey.shape[2] - 1 + k, :, i:ey.shape[4] - 1 + i]
        dz = ez[:, :, :, j:ez.shape[3] - 1 + j, i:ez.shape[4] - 1 + i]
        dets.append(_det_of_columns(dx, dy, dz))
    return torch.stack(dets, dim=1) * float(np.linalg.det(spatial_derivative_matrix(grid)))


def _det_of_columns(dx: torch.Tensor, dy: torch.Tensor, dz: torch.Tensor) -> torch.Tensor:
    """Per voxel, det of the 3x3 matrix with columns ``dx``, ``dy``, ``dz`` (each ``B x 3 x ...``, rows the map
    components x, y, z) -> ``B x ...``."""
    return (dx[:, 0] * (dy[:, 1] * dz[:, 2] - dy[:, 2] * dz[:, 1])
            - dy[:, 0] * (dx[:, 1] * dz[:, 2] - dx[:, 2] * dz[:, 1])
            + dz[:, 0] * (dx[:, 1] * dy[:, 2] - dx[:, 2] * dy[:, 1]))


def _pad_linear(phi: torch.Tensor) -> torch.Tensor:
    """One voxel of linear extrapolation on each face of D, H, W (edges and corners unused, left 0)."""
    b, c, d, h, w = phi.shape
    padded = phi.new_zeros((b, c, d + 2, h + 2, w + 2))
    padded[:, :, 1:-1, 1:-1, 1:-1] = phi
    inner = padded[:, :, 1:-1, 1:-1]
    inner[..., 0] = 2 * phi[..., 0] - phi[..., 1]
    inner[..., -1] = 2 * phi[..., -1] - phi[..., -2]
    rows = padded[:, :, 1:-1, :, 1:-1]
    rows[:, :, :, 0] = 2 * phi[:, :, :, 0] - phi[:, :, :, 1]
    rows[:, :, :, -1] = 2 * phi[:, :, :, -1] - phi[:, :, :, -2]
    slices = padded[:, :, :, 1:-1, 1:-1]
    slices[:, :, 0] = 2 * phi[:, :, 0] - phi[:, :, 1]
    slices[:, :, -1] = 2 * phi[:, :, -1] - phi[:, :, -2]
    return padded


def fold_mask(det: torch.Tensor) -> torch.Tensor:
    """Folds are voxels with det J <= 0."""
    return det <= 0

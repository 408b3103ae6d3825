"""Jacobian determinant of a physical map and fold detection (DESIGN §3: full 3x3 det, mm/mm).

The AVSM authors' code counts only the product of the diagonal partials; we compute the full
determinant of the Jacobian of phi with respect to physical fixed coordinates.
"""
from __future__ import annotations

import torch

from .geometry import Grid
from .integrate import physical_gradient


def det_jacobian(phi: torch.Tensor, grid: Grid) -> torch.Tensor:
    """``B x 3 x D x H x W`` map on ``grid`` -> ``B x 1 x D x H x W`` det(d phi / d x)."""
    j = physical_gradient(phi, grid)  # B x 3(c) x 3(j) x D x H x W
    a, b, c = j[:, 0, 0], j[:, 0, 1], j[:, 0, 2]
    d, e, f = j[:, 1, 0], j[:, 1, 1], j[:, 1, 2]
    g, h, i = j[:, 2, 0], j[:, 2, 1], j[:, 2, 2]
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    return det[:, None]


def fold_mask(det: torch.Tensor) -> torch.Tensor:
    """Folds are voxels with det J <= 0."""
    return det <= 0

"""Time integration of maps: vSVF advection (AVSM Eq. 3) and scaling and squaring (VoxelMorph).

Maps hold physical LPS points (x, y, z) in mm on a grid; velocities are physical (mm per unit time).
"""
from __future__ import annotations

import torch

from .geometry import Grid, physical_points, spatial_derivative_matrix
from .maps import sample


def index_derivative(field: torch.Tensor, dim: int) -> torch.Tensor:
    """d field / d index along ``dim``: central differences inside, one-sided at the two faces."""
    n = field.shape[dim]
    inner = 0.5 * (field.narrow(dim, 2, n - 2) - field.narrow(dim, 0, n - 2))
    first = field.narrow(dim, 1, 1) - field.narrow(dim, 0, 1)
    last = field.narrow(dim, n - 1, 1) - field.narrow(dim, n - 2, 1)
    return torch.cat([first, inner, last], dim=dim)


def index_velocity(velocity: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Physical velocity (mm / unit time, x y z) -> voxel-index velocity (i_x, i_y, i_z) on ``grid``."""
    to_index = torch.as_tensor(spatial_derivative_matrix(grid).T, dtype=velocity.dtype, device=velocity.device)
    return torch.einsum("kj,bjdhw->bkdhw", to_index, velocity)


def advection_rhs(phi: torch.Tensor, velocity_index: torch.Tensor) -> torch.Tensor:
    """``-Dphi v`` = -sum_k dphi/di_k * di_k/dt: the right-hand side of phi_t + Dphi v = 0.

    ``velocity_index`` is the velocity in voxel-index units (see :func:`index_velocity`), so only index
    derivatives are needed (central inside, one-sided at the faces).
    """
    d_ix, d_iy, d_iz = (index_derivative(phi, dim) for dim in (4, 3, 2))
    return -(d_ix * velocity_index[:, 0:1] + d_iy * velocity_index[:, 1:2] + d_iz * velocity_index[:, 2:3])


def advect_map(phi0: torch.Tensor, velocity: torch.Tensor, grid: Grid, steps: int = 10) -> torch.Tensor:
    """Integrate phi_t + Dphi v = 0 for unit time from ``phi0`` with classic RK4 (``steps`` steps).

    For a stationary ``velocity`` with flow psi_t, the solution is phi(1) = phi0 ∘ psi_1^{-1}: the new
    deformation is composed on the fixed side of phi0 with no explicit interpolation of phi0.
    """
    dt = 1.0 / steps
    phi = phi0
    velocity_index = index_velocity(velocity, grid)
    for _ in range(steps):
        k1 = advection_rhs(phi, velocity_index)
        k2 = advection_rhs(phi + 0.5 * dt * k1, velocity_index)
        k3 = advection_rhs(phi + 0.5 * dt * k2, velocity_index)
        k4 = advection_rhs(phi + dt * k3, velocity_index)
        phi = phi + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return phi


def flow_maps(velocity: torch.Tensor, grid: Grid, steps: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """(psi^{-1}, psi) of a stationary velocity on ``grid``: advect the identity with +v and with -v.

    ``psi^{-1}`` is the pull-back deformation used for warping; ``psi`` is its inverse ("the inverse comes
    for free by integrating -v").
    """
    identity = physical_points(grid, device=velocity.device, dtype=velocity.dtype)
    return advect_map(identity, velocity, grid, steps), advect_map(identity, -velocity, grid, steps)


def scaling_and_squaring(velocity: torch.Tensor, grid: Grid, steps: int = 7) -> torch.Tensor:
    """exp(v) as a map for a stationary displacement-velocity field (VoxelMorph diffeomorphic variant).

    ``velocity`` is ``B x 3 x D x H x W`` physical displacement (mm); returns the map id + u with
    u = v / 2^steps composed with itself ``steps`` times: u <- u + u ∘ (id + u).
    """
    identity = physical_points(grid, device=velocity.device, dtype=velocity.dtype)
    displacement = velocity / (2**steps)
    for _ in range(steps):
        displacement = displacement + sample(displacement, grid, identity + displacement, padding_mode="border")
    return identity + displacement

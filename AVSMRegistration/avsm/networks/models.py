"""Registration networks on top of the engine: AVSM (affine network + multi-step vSVF) and VoxelMorph.

Both run on working-grid tensors in [0, 1]: ``fixed`` (``B x 1 x D x H x W`` on ``fixed_grid``) and
``moving`` (on ``moving_grid``, the same grid for every batch item). The affine stage gives
(A, b) fixed -> moving physical points; the deformable stage a deformation psi^{-1} on a map grid
(physical points, starting from the identity) so that the full pull-back map is phi = A ∘ psi^{-1},
exactly as :func:`avsm.optimisation.optimise_vsvf` and the pipeline's export use it. The moving image is
interpolated once, from the original, with the full map.

AVSM (§2.2): for each vSVF step s, the momentum U-net sees (moving ∘ phi_{s-1}, fixed) and outputs a
momentum m_s at half resolution (on ``coarser_grid(fixed_grid, 2)``); v_s = K * m_s with the
multi-Gaussian smoother; psi_s^{-1} = advect(psi_{s-1}^{-1}, v_s) composes the new deformation on the
fixed side (AVSM Eq. 3); the inverse is psi_s = exp(-v_s) ∘ psi_{s-1}. Momenta are in units of the
domain extent (the paper's [0, 1] coordinates) times the extent in mm.

VoxelMorph (TMI 2019): the U-net outputs a displacement in voxel units on the working grid; the
diffeomorphic variant treats it as a stationary velocity, resamples it to half resolution and
integrates it by scaling and squaring (7 steps); its inverse is exp(-v).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import AVSMError
from ..geometry import Grid, coarser_grid, physical_points
from ..integrate import advect_map, scaling_and_squaring
from ..losses import diffusion_regulariser
from ..maps import apply_affine, compose, sample, upsample_map, warp_image
from ..smoothing import DEFAULT_SIGMA_FRACTIONS, DEFAULT_WEIGHTS, MultiGaussianSmoother, default_sigmas_mm
from .affine_net import AffineNet, AffineSteps, grid_centre_and_extent, multi_step_affine
from .unets import MomentumUNet, VoxelMorphUNet

NETWORK_METHODS = ("avsm", "voxelmorph")


def doc(default, text: str):
    """A dataclass field with its documentation (shown by ``avsm train --describe``)."""
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata={"doc": text})
    return field(default=default, metadata={"doc": text})


@dataclass
class NetworkConfig:
    """Architecture of a registration network (stored in every checkpoint as a plain dict)."""

    method: str = doc("avsm", "network method: 'avsm' (affine + vSVF) or 'voxelmorph' (affine + VoxelMorph)")
    affine_width: int = doc(16, "affine network channels (reference 16)")
    affine_hidden: int = doc(32, "width of the affine network's hidden fully connected layer (reference 32)")
    affine_steps: int = doc(7, "recurrent affine steps at test time (reference 7)")
    momentum_widths: tuple[int, ...] = doc((16, 32, 64, 128, 256),
                                             "momentum U-net channels at 1, 1/2, 1/4, 1/8, 1/16 resolution")
    vsvf_steps: int = doc(2, "vSVF steps at test time (AVSM 2-step)")
    time_steps: int = doc(10, "RK4 steps per unit time of the map advection")
    sigma_fractions: tuple[float, ...] = doc(DEFAULT_SIGMA_FRACTIONS,
                                               "multi-Gaussian sigmas as fractions of the domain extent")
    sigma_weights: tuple[float, ...] = doc(DEFAULT_WEIGHTS, "weights of the multi-Gaussian sigmas")
    voxelmorph_enc: tuple[int, ...] = doc((16, 32, 32, 32), "VoxelMorph encoder channels (one per level)")
    voxelmorph_dec: tuple[int, ...] = doc((32, 32, 32, 32, 32, 16, 16),
                                            "VoxelMorph decoder channels (one per level, then full-resolution convs)")
    diffeomorphic: bool = doc(True, "VoxelMorph: integrate a half-resolution velocity by scaling and squaring")
    integration_steps: int = doc(7, "VoxelMorph scaling-and-squaring steps")

    @classmethod
    def from_dict(cls, values: dict) -> "NetworkConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise AVSMError(f"network config has unknown field(s): {', '.join(unknown)}")
        config = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        if config.method not in NETWORK_METHODS:
            raise AVSMError(f"network method must be one of {', '.join(NETWORK_METHODS)} (got '{config.method}')")
        return config

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class DeformableOutput:
    """Deformable stage: ``pullback_map`` psi^{-1} (for each point x of ``map_grid``, on the fixed side, the point
    psi^{-1}(x) that the affine then takes into the moving image) and ``pushforward_map`` psi, its inverse (None
    unless asked for), both ``B x 3 x d x h x w`` physical points on ``map_grid`` (LPS mm, components (x, y, z));
    ``phi`` = A ∘ psi^{-1} on the fixed grid, ``warped`` = moving ∘ phi, and per-step terms for the loss."""

    pullback_map: torch.Tensor
    pushforward_map: Optional[torch.Tensor]
    map_grid: Grid
    phi: torch.Tensor
    warped: torch.Tensor
    step_warped: list = field(default_factory=list)  # warped image after each step (B x 1 x D x H x W)
    step_regularisers: list = field(default_factory=list)  # scalar regulariser of each step
    parameters: list = field(default_factory=list)  # the head outputs (momenta or displacement), detached-able


def momentum_regulariser(momentum: torch.Tensor, velocity: torch.Tensor, extent: float) -> torch.Tensor:
    """<m, v> = ||v||_L^2 in domain-normalised units, averaged over the grid (AVSM Eq. 5, without lambda)."""
    return (momentum * velocity).sum(dim=1).clamp_min(0).mean() / extent**2


def full_map(matrix: torch.Tensor, translation: torch.Tensor, deformation: torch.Tensor, map_grid: Grid,
             fixed_grid: Grid) -> torch.Tensor:
    """phi = A ∘ psi^{-1} on ``fixed_grid`` (batched affine); ``map_grid`` shares its corners (coarser_grid)."""
    return apply_affine(matrix, translation, upsample_map(deformation, fixed_grid))


class RegistrationNetwork(nn.Module):
    """Common part: the recurrent affine network and the affine stage."""

    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.config = config
        self.affine_net = AffineNet(config.affine_width, config.affine_hidden)

    def affine(self, fixed: torch.Tensor, fixed_grid: Grid, moving: torch.Tensor, moving_grid: Grid,
               matrix: torch.Tensor, translation: torch.Tensor, steps: Optional[int] = None) -> AffineSteps:
        steps = self.config.affine_steps if steps is None else steps
        return multi_step_affine(self.affine_net, fixed, fixed_grid, moving, moving_grid, matrix, translation, steps)

    def map_grid(self, fixed_grid: Grid) -> Grid:
        return coarser_grid(fixed_grid, 2)


class AVSMNetwork(RegistrationNetwork):
    """Affine network + momentum U-net + multi-Gaussian smoother + RK4 advection (AVSM)."""

    def __init__(self, config: NetworkConfig):
        super().__init__(config)
        self.momentum_net = MomentumUNet(config.momentum_widths)
        self._smoothers: dict = {}

    def smoother(self, map_grid: Grid, device) -> MultiGaussianSmoother:
        key = (map_grid, str(device))
        if key not in self._smoothers:
            sigmas = default_sigmas_mm(map_grid, self.config.sigma_fractions)
            self._smoothers = {key: MultiGaussianSmoother(map_grid, sigmas, self.config.sigma_weights).to(device)}
        return self._smoothers[key]

    def predict_momentum(self, warped: torch.Tensor, fixed: torch.Tensor, map_grid: Grid) -> torch.Tensor:
        """``B x 3 x d x h x w`` momentum (mm) on ``map_grid`` from the current warped image and the fixed one."""
        raw = self.momentum_net(torch.cat([2.0 * warped - 1.0, 2.0 * fixed - 1.0], dim=1))
        if tuple(raw.shape[2:]) != tuple(map_grid.shape):
            raw = nn.functional.interpolate(raw, size=map_grid.shape, mode="trilinear", align_corners=True)
        return raw * grid_centre_and_extent(map_grid)[1]

    def deformable(self, fixed: torch.Tensor, fixed_grid: Grid, moving: torch.Tensor, moving_grid: Grid,
                   matrix: torch.Tensor, translation: torch.Tensor, steps: Optional[int] = None,
                   with_inverse: bool = False, momenta: Optional[Sequence[torch.Tensor]] = None) -> DeformableOutput:
        """Multi-step vSVF from the affine (A, b). With ``momenta`` given (instance optimisation), they are
        used instead of the momentum network's predictions."""
        steps = (self.config.vsvf_steps if steps is None else steps) if momenta is None else len(momenta)
        map_grid = self.map_grid(fixed_grid)
        extent = grid_centre_and_extent(map_grid)[1]
        smoother = self.smoother(map_grid, fixed.device)
        batch = fixed.shape[0]
        identity = physical_points(map_grid, device=fixed.device, dtype=fixed.dtype).expand(batch, 3, *map_grid.shape)
        deformation = identity
        inverse = identity if with_inverse else None
        phi = apply_affine(matrix, translation, physical_points(fixed_grid, device=fixed.device, dtype=fixed.dtype)
                           .expand(batch, 3, *fixed_grid.shape))
        warped = warp_image(moving, moving_grid, phi)
        out = DeformableOutput(deformation, inverse, map_grid, phi, warped)
        for step in range(steps):
            momentum = momenta[step] if momenta is not None else self.predict_momentum(warped, fixed, map_grid)
            velocity = smoother(momentum)
            deformation = advect_map(deformation, velocity, map_grid, self.config.time_steps)
            if with_inverse:
                psi = advect_map(identity, -velocity, map_grid, self.config.time_steps)
                inverse = compose(psi, map_grid, inverse) if step > 0 else psi
            phi = full_map(matrix, translation, deformation, map_grid, fixed_grid)
            warped = warp_image(moving, moving_grid, phi)
            out.step_warped.append(warped)
            out.step_regularisers.append(momentum_regulariser(momentum, velocity, extent))
            out.parameters.append(momentum)
        out.pullback_map, out.pushforward_map, out.phi, out.warped = deformation, inverse, phi, warped
        return out


class VoxelMorphNetwork(RegistrationNetwork):
    """Affine network + VoxelMorph U-net (displacement, or velocity integrated by scaling and squaring)."""

    def __init__(self, config: NetworkConfig):
        super().__init__(config)
        self.unet = VoxelMorphUNet(config.voxelmorph_enc, config.voxelmorph_dec)

    def map_grid(self, fixed_grid: Grid) -> Grid:
        return coarser_grid(fixed_grid, 2) if self.config.diffeomorphic else fixed_grid

    def deformable(self, fixed: torch.Tensor, fixed_grid: Grid, moving: torch.Tensor, moving_grid: Grid,
                   matrix: torch.Tensor, translation: torch.Tensor, steps: Optional[int] = None,
                   with_inverse: bool = False, momenta: Optional[Sequence[torch.Tensor]] = None) -> DeformableOutput:
        """``momenta``: optionally the (single) voxel-unit field to use instead of the U-net's prediction."""
        batch = fixed.shape[0]
        points = physical_points(fixed_grid, device=fixed.device, dtype=fixed.dtype).expand(batch, 3, *fixed_grid.shape)
        affine_phi = apply_affine(matrix, translation, points)
        if momenta is not None:
            flow = momenta[0]
        else:
            flow = self.unet(torch.cat([warp_image(moving, moving_grid, affine_phi), fixed], dim=1))
        to_physical = torch.as_tensor(fixed_grid.direction_matrix() @ np.diag(fixed_grid.spacing),
                                      dtype=flow.dtype, device=flow.device)
        displacement = torch.einsum("ij,bjdhw->bidhw", to_physical, flow)  # mm, (x, y, z)
        map_grid = self.map_grid(fixed_grid)
        inverse = None
        if self.config.diffeomorphic:
            map_points = physical_points(map_grid, device=fixed.device, dtype=fixed.dtype)
            velocity = sample(displacement, fixed_grid, map_points, padding_mode="border")
            deformation = scaling_and_squaring(velocity, map_grid, self.config.integration_steps)
            if with_inverse:
                inverse = scaling_and_squaring(-velocity, map_grid, self.config.integration_steps)
        else:
            deformation = points + displacement
        phi = full_map(matrix, translation, deformation, map_grid, fixed_grid)
        warped = warp_image(moving, moving_grid, phi)
        return DeformableOutput(deformation, inverse, map_grid, phi, warped, [warped],
                                [diffusion_regulariser(flow)], [flow])


def build_network(config: NetworkConfig) -> RegistrationNetwork:
    return AVSMNetwork(config) if config.method == "avsm" else VoxelMorphNetwork(config)

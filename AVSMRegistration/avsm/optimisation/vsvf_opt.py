"""vSVF registration by optimisation over the momentum (AVSM §2.2 / §3 "vSVF-opt").

The momentum m lives on a grid of half the working resolution; v = K * m (multi-Gaussian smoother);
the deformation psi^{-1} is the identity advected by v for unit time (RK4) and psi (the inverse) by -v.
The full pull-back map on the working grid is phi = A ∘ upsample(psi^{-1}): the affine is applied to
points, the moving image is interpolated once. Loss: mk-LNCC(moving ∘ phi, fixed) + lambda <m, v>.
Given a prior deformation (a network's psi_0^{-1}), the optimised step is composed after it,
phi = A ∘ psi_0^{-1} ∘ upsample(psi^{-1}), as one more step of AVSM's multi-step vSVF: that is the per-pair
instance optimisation of the networks, at the optimisation's working resolution rather than the network's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..geometry import Grid, coarser_grid, physical_to_normalised_matrix
from ..integrate import flow_maps, advect_map
from ..jacobian import det_jacobian_at_cell_corners
from ..geometry import physical_points
from ..losses import LNCCScale, MultiKernelLNCC, NormalisedGradientFields
from ..maps import apply_affine, compose, upsample_map, warp_image_at
from ..smoothing import DEFAULT_WEIGHTS, MultiGaussianSmoother, default_sigmas_mm
from .affine_opt import AffineParameters
from .light_adam import LightAdam
from .masks import SimilarityMasks
from .pyramid import downsample


# Tuned on malf2012 training pairs 1010-1018 (never the held-out evaluation subjects), benchmarks/tuning/*.csv:
# the paper's sigmas (0.05-0.25 of the domain) and coarse windows suit knees at 0.36 mm, not inter-subject
# brains at 2 mm (Dice 0.52 vs 0.60 with these, no folds either way).
BRAIN_SIGMA_FRACTIONS = (0.02, 0.04, 0.06, 0.08, 0.1)
BRAIN_LNCC_SCALES = (LNCCScale(1 / 16, 0.3, 1), LNCCScale(1 / 8, 0.7, 1))


@dataclass
class VSVFSettings:
    """Settings of vSVF optimisation (defaults tuned on training pairs, see above).

    ``levels`` is the coarse-to-fine schedule: (image scale relative to the working grid, iterations) per level,
    finest last; ``None`` means one level at the working grid with ``iterations`` iterations. A level stops
    early when its loss has fallen by less than ``plateau`` (relative) over the last ``patience`` iterations.
    """

    iterations: int = 60
    learning_rate: float = 2.0  # mm of momentum per Adam step
    regularisation: float = 10.0  # lambda_vr of AVSM Eq. 5 (domain-normalised units, as the paper)
    time_steps: int = 10  # RK4 steps for unit time
    # RK4 steps while optimising (None: time_steps); 0 takes psi^{-1} = id - v, the first-order map, during the
    # iterations only: the returned maps are always integrated with time_steps RK4 steps
    search_time_steps: Optional[int] = None
    sigma_fractions: Sequence[float] = BRAIN_SIGMA_FRACTIONS  # multi-Gaussian sigmas, fractions of the domain
    sigma_weights: Sequence[float] = DEFAULT_WEIGHTS  # increasing with sigma, as the paper
    map_resolution_factor: float = 2.0  # momentum/map grid is this many times coarser than the working grid
    lncc_scales: Optional[Sequence[LNCCScale]] = BRAIN_LNCC_SCALES  # None: the reference set for the image size
    levels: Optional[Sequence[tuple[float, int]]] = None
    plateau: float = 0.0  # 0: never stop early
    patience: int = 5
    # weight of the penalty on det J below fold_margin at the map cells' corners (:func:`fold_penalty`; 0: none)
    fold_penalty: float = 0.0
    fold_margin: float = 0.2
    # a further vSVF step with its own settings, optimised after this one and composed after it (AVSM's multi-step
    # vSVF, phi = A ∘ psi_1^{-1} ∘ psi_2^{-1}); its regulariser sees its own momentum alone, its fold penalty the
    # composed map (vsvf-opt only)
    refinement: Optional["VSVFSettings"] = None

    def schedule(self) -> tuple[tuple[float, int], ...]:
        """The levels to run: ``levels``, or the working grid alone for ``iterations`` iterations."""
        if self.levels is None:
            return ((1.0, self.iterations),)
        return tuple((float(scale), int(count)) for scale, count in self.levels)


# vsvf-opt, the accurate preset (at 1.5 mm, avsm.methods), two composed steps chosen on training pairs
# (benchmarks/tuning/README.md): a coarse step (the brain sigmas, momentum on 3 mm, 30 iterations) takes the large
# displacements, then a fine step from its map (sigmas 0.0075-0.0375 of the domain, momentum on 2.25 mm) with a
# fresh momentum, so its regulariser does not pay again for the first step's deformation. Both have a stronger
# regulariser than the defaults and a penalty on map cells whose corners shrink below a fifth of their volume, which
# keeps such small sigmas fold-free, and integrate with 3 RK4 steps while iterating (as good as 10, in a third less
# time; the returned maps take 10).
_VSVF_OPT_COMMON = dict(regularisation=50.0, fold_penalty=1e4, fold_margin=0.2, search_time_steps=3)
VSVF_OPT_SETTINGS = VSVFSettings(iterations=30, sigma_fractions=BRAIN_SIGMA_FRACTIONS, **_VSVF_OPT_COMMON,
                                 refinement=VSVFSettings(sigma_fractions=(0.0075, 0.015, 0.0225, 0.03, 0.0375),
                                                         map_resolution_factor=1.5, **_VSVF_OPT_COMMON))

# Instance optimisation of a network's result (one more vSVF step for the pair, at the network's working grid):
# one RK4 step for the map while iterating (the step is small: as good as two, 0.5 Dice points better than the
# first-order map at the same iteration count), 5 for the returned maps, and a larger Adam step than vsvf-opt's
# since it runs few iterations. Chosen on the validation subjects (benchmarks/tuning/README.md).
INSTANCE_OPT_SETTINGS = VSVFSettings(learning_rate=3.0, time_steps=5, search_time_steps=1)


@dataclass
class PriorDeformation:
    """A deformation to refine: its pull-back map psi_0^{-1} and push-forward map psi_0 (``1 x 3 x d x h x w``
    physical points, LPS mm) on ``grid``."""

    pullback_map: torch.Tensor
    pushforward_map: torch.Tensor
    grid: Grid


@dataclass
class VSVFResult:
    momentum: torch.Tensor  # 1 x 3 x d x h x w on map_grid (mm)
    velocity: torch.Tensor  # 1 x 3 x d x h x w on map_grid (mm per unit time)
    pullback_map: torch.Tensor  # psi^{-1}: 1 x 3 x d x h x w physical points (LPS mm) on map_grid
    pushforward_map: torch.Tensor  # psi, its inverse, likewise
    map_grid: Grid
    losses: list = field(default_factory=list)


def vsvf_maps(momentum: torch.Tensor, smoother: MultiGaussianSmoother, map_grid: Grid, time_steps: int,
              with_inverse: bool) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """(velocity, psi^{-1}, psi or None) for a momentum on ``map_grid``."""
    velocity = smoother(momentum)
    if with_inverse:
        forward, inverse = flow_maps(velocity, map_grid, time_steps)
        return velocity, forward, inverse
    identity = physical_points(map_grid, device=momentum.device, dtype=momentum.dtype)
    return velocity, advect_map(identity, velocity, map_grid, time_steps), None


def optimise_vsvf(
    fixed: torch.Tensor,
    fixed_grid: Grid,
    moving: torch.Tensor,
    moving_grid: Grid,
    affine: AffineParameters,
    settings: VSVFSettings = VSVFSettings(),
    initial_momentum: Optional[torch.Tensor] = None,
    progress: Optional[Callable[[float, str], None]] = None,
    prior: Optional[PriorDeformation] = None,
    masks: SimilarityMasks = SimilarityMasks(),
    similarity: str = "lncc",
) -> VSVFResult:
    """Adam over the momentum, coarse to fine; ``fixed``/``moving`` are ``1 x 1 x D x H x W`` working tensors in [0, 1].

    The momentum lives on one map grid, ``map_resolution_factor`` times coarser than the working grid; each level
    of ``settings.schedule()`` compares the images resampled to that level's scale (anti-aliased), so coarse
    levels cost little beyond the integration and the finest level sees every working voxel. With a ``prior``,
    the returned pull-back map is the composition psi_0^{-1} ∘ psi^{-1} (and the push-forward map psi ∘ psi_0),
    both on the final map grid; the
    regulariser acts on the new step only. ``masks`` restrict the similarity to where they are 1. ``similarity``:
    "lncc", mk-LNCC (squared: a local inversion of contrast scores as well), or "ngf", normalised gradient fields
    (any relation of intensities across a change of contrast, :func:`deformable_similarity`).
    """
    device = fixed.device
    schedule = settings.schedule()
    total = max(sum(count for _, count in schedule), 1)
    map_grid = coarser_grid(fixed_grid, settings.map_resolution_factor)
    smoother = MultiGaussianSmoother(map_grid, default_sigmas_mm(map_grid, settings.sigma_fractions),
                                     settings.sigma_weights).to(device)
    if initial_momentum is None:
        momentum = torch.zeros((1, 3, *map_grid.shape), device=device)
    else:
        momentum = initial_momentum.detach().clone().to(device)
    momentum.requires_grad_(True)
    matrix, translation = affine.tensors(device)
    prior_deformation = prior.pullback_map.to(device) if prior is not None else None
    loss = deformable_similarity(similarity, settings)
    losses: list = []
    for level, (scale, count) in enumerate(schedule):
        fixed_l, fixed_grid_l = downsample(fixed, fixed_grid, scale)
        moving_l, moving_grid_l = downsample(moving, moving_grid, scale)
        masks_l = masks.at_scale(fixed_grid, moving_grid, scale)
        against_fixed = loss.against(fixed_l)

        def level_similarity(warped: torch.Tensor, coordinates: torch.Tensor) -> torch.Tensor:
            return against_fixed(warped, masks_l.weight(moving_grid_l, coordinates))

        losses += _optimise_level(momentum, smoother, map_grid, fixed_grid_l, moving_l, moving_grid_l, matrix,
                                  translation, prior_deformation, prior, level_similarity, settings, count,
                                  _level_progress(progress, len(losses), count, total, level, len(schedule)))
    with torch.no_grad():
        velocity, deformation, inverse = vsvf_maps(momentum, smoother, map_grid, settings.time_steps, with_inverse=True)
        if prior is not None:
            deformation = compose(prior_deformation, prior.grid, deformation)
            # psi ∘ psi_0 on map_grid: psi_0 brought onto map_grid, then the new step's psi sampled there
            prior_inverse = compose(prior.pushforward_map.to(device), prior.grid,
                                    physical_points(map_grid, device=device))
            inverse = compose(inverse, map_grid, prior_inverse)
    return VSVFResult(momentum.detach(), velocity, deformation, inverse, map_grid, losses)


def deformable_similarity(name: str, settings: VSVFSettings) -> torch.nn.Module:
    """The deformable stages' loss called ``name``: "lncc" (mk-LNCC on ``settings.lncc_scales``) or "ngf"
    (normalised gradient fields)."""
    if name == "lncc":
        return MultiKernelLNCC(settings.lncc_scales)
    if name == "ngf":
        return NormalisedGradientFields()
    raise ValueError(f"unknown deformable similarity {name!r}; choose lncc or ngf")


def _level_progress(progress: Optional[Callable[[float, str], None]], done: int, count: int, total: int, level: int,
                    levels: int) -> Optional[Callable[[int, float, float], None]]:
    if progress is None:
        return None

    def report(step: int, sim: float, reg: float) -> None:
        prefix = f"level {level + 1}/{levels}, " if levels > 1 else ""
        progress((done + step + 1) / total,
                 f"{prefix}step {step + 1}/{count}, similarity {sim:.4f}, regulariser {reg:.4f}")

    return report


def _optimise_level(momentum: torch.Tensor, smoother: MultiGaussianSmoother, map_grid: Grid, fixed_grid: Grid,
                    moving: torch.Tensor, moving_grid: Grid, matrix: torch.Tensor, translation: torch.Tensor,
                    prior_deformation: Optional[torch.Tensor],
                    prior: Optional[PriorDeformation],
                    similarity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                    settings: VSVFSettings, count: int,
                    progress: Optional[Callable[[int, float, float], None]]) -> list[tuple[float, float]]:
    """``count`` Adam steps on ``momentum`` (in place) at one level; returns (similarity, regulariser) per step.

    ``similarity(warped, coordinates)`` scores the warped moving image (``coordinates``: where it was sampled,
    in the moving grid's ``grid_sample`` coordinates). The affine and the moving grid's normalisation are applied
    on the small map grid before upsampling (trilinear interpolation is linear), not to every working voxel.
    """
    extent = float(np.mean([(n - 1) * s for n, s in zip(map_grid.size_xyz, map_grid.spacing)]))
    to_coordinates = torch.as_tensor(physical_to_normalised_matrix(moving_grid), dtype=matrix.dtype,
                                     device=matrix.device)
    matrix, translation = to_coordinates[:3, :3] @ matrix, to_coordinates[:3, :3] @ translation + to_coordinates[:3, 3]
    optimiser = LightAdam([momentum], lr=settings.learning_rate)
    losses: list[tuple[float, float]] = []
    for step in range(count):
        optimiser.zero_grad()
        velocity, deformation = _search_map(momentum, smoother, map_grid, settings)
        if prior is not None:
            deformation = compose(prior_deformation, prior.grid, deformation)
        coordinates = upsample_map(apply_affine(matrix, translation, deformation), fixed_grid).permute(0, 2, 3, 4, 1)
        sim = similarity(warp_image_at(moving, moving_grid, coordinates), coordinates)
        # <m, v> in domain-normalised units (coordinates / extent), averaged over the grid (AVSM Eq. 5).
        # As the authors' code (mermaid) does, the pointwise product m.v is clamped at 0 before summing:
        # <m, Km> is >= 0 in total but can be negative locally, and those parts are not rewarded.
        reg = settings.regularisation * (momentum * velocity).sum(dim=1).clamp_min(0).mean() / extent**2
        if settings.fold_penalty > 0:
            reg = reg + settings.fold_penalty * fold_penalty(deformation, map_grid, settings.fold_margin)
        loss = sim + reg
        loss.backward()
        optimiser.step()
        losses.append((sim.item(), reg.item()))
        if progress is not None:
            progress(step, losses[-1][0], losses[-1][1])
        if _on_plateau(losses, settings.plateau, settings.patience):
            break
    return losses


def fold_penalty(deformation: torch.Tensor, map_grid: Grid, margin: float) -> torch.Tensor:
    """mean(max(margin - det J, 0)^2) of a deformation psi^{-1} (``1 x 3 x d x h x w`` physical points on
    ``map_grid``) over the 8 corners of every map cell (:func:`avsm.jacobian.det_jacobian_at_cell_corners`): the
    exact det J of the trilinear map that the working and output grids see, where it folds first. Zero while every
    corner keeps more than ``margin`` of its volume; it grows as one shrinks towards a fold (det J <= 0)."""
    det = det_jacobian_at_cell_corners(deformation, map_grid)
    return (margin - det).clamp_min(0).square().mean()


def _search_map(momentum: torch.Tensor, smoother: MultiGaussianSmoother, map_grid: Grid,
                settings: VSVFSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """(velocity, psi^{-1}) as the iterations see them: RK4 with ``search_time_steps`` steps, or id - v for 0."""
    steps = settings.time_steps if settings.search_time_steps is None else settings.search_time_steps
    if steps == 0:
        velocity = smoother(momentum)
        return velocity, physical_points(map_grid, device=momentum.device, dtype=momentum.dtype) - velocity
    velocity, deformation, _ = vsvf_maps(momentum, smoother, map_grid, steps, with_inverse=False)
    return velocity, deformation


def _on_plateau(losses: Sequence[tuple[float, float]], plateau: float, patience: int) -> bool:
    """True when the total loss fell by less than ``plateau`` (relative) over the last ``patience`` steps."""
    if plateau <= 0 or len(losses) <= patience:
        return False
    now, before = sum(losses[-1]), sum(losses[-1 - patience])
    return before - now < plateau * abs(before)

"""Multi-scale affine registration by optimisation (the AVSM paper's "affine-opt" baseline).

The affine maps fixed physical points to moving physical points (ITK resampling convention):
``y = A x + b``. It is parametrised about a centre ``c`` (the fixed centre of mass) as
``y = (I + L)(x - c) + c + t`` so that rotations about the anatomy and translations are decoupled.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..geometry import Grid, physical_points, physical_to_normalised_matrix
from ..losses import MutualInformation, affine_similarity
from ..maps import apply_affine, warp_image_at
from .light_adam import LightAdam
from .masks import SimilarityMasks
from .pyramid import downsample


# The affine optimisation's pyramid (fractions of its working grid), Adam steps per level and step size at the coarsest
# (each finer level halves it).
AFFINE_SCALES = (0.25, 0.5, 1.0)
AFFINE_ITERATIONS = (150, 80, 30)
AFFINE_LEARNING_RATE = 0.01
# With alternative starts, each runs this many steps of the coarsest level (a third of the affine method's 150) and
# only the one whose loss is then lowest goes on.
START_TRIAL_STEPS = 50
# The pitches (degrees about the left-right axis) that the mutual-information affine tries beside the centre-of-mass
# start: on whole heads its loss has local minima in how far the head is nodded (a T1 pair at Dice 0.17 from the
# centre of mass, 0.47 from +15 degrees; benchmarks/tuning/README.md).
PITCH_STARTS_DEG = (15.0, -15.0, 30.0, -30.0)


@dataclass
class AffineParameters:
    """Physical affine fixed -> moving (LPS mm): y = matrix @ x + translation."""

    matrix: np.ndarray  # 3 x 3
    translation: np.ndarray  # 3

    @classmethod
    def translation_only(cls, translation: Sequence[float]) -> "AffineParameters":
        return cls(np.eye(3), np.asarray(translation, dtype=np.float64))

    def as_4x4(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = self.matrix
        m[:3, 3] = self.translation
        return m

    def inverse(self) -> "AffineParameters":
        inv = np.linalg.inv(self.as_4x4())
        return AffineParameters(inv[:3, :3], inv[:3, 3])

    def tensors(self, device, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.as_tensor(self.matrix, dtype=dtype, device=device),
                torch.as_tensor(self.translation, dtype=dtype, device=device))


def optimise_affine(
    fixed: torch.Tensor,
    fixed_grid: Grid,
    moving: torch.Tensor,
    moving_grid: Grid,
    init: AffineParameters,
    centre: Sequence[float],
    scales: Sequence[float] = AFFINE_SCALES,
    iterations: Sequence[int] = AFFINE_ITERATIONS,
    learning_rate: float = AFFINE_LEARNING_RATE,
    progress: Optional[Callable[[float, str], None]] = None,
    masks: SimilarityMasks = SimilarityMasks(),
    similarity: str = "lncc",
    longest: Optional[Sequence[int]] = None,
    plateau: float = 0.01,
    patience: int = 10,
    starts: Sequence[AffineParameters] = (),
) -> AffineParameters:
    """Adam on (L, t) over an image pyramid, minimising the similarity of moving(A x + b) and fixed.

    ``fixed`` and ``moving`` are ``1 x 1 x D x H x W`` working-grid tensors in [0, 1]; ``masks`` restrict the
    similarity to where they are 1; ``similarity``: "lncc" (mk-LNCC) or "mi" (normalised mutual information,
    for a change of contrast). Each level runs ``iterations`` steps; with ``longest``, a level then goes on, up to
    ``longest`` steps, while its mean loss over the last ``patience`` steps is still ``plateau`` (relative) below
    the mean over the ``patience`` steps before. With ``starts``, the first ``START_TRIAL_STEPS`` steps of the coarsest
    level also run from each of them, and the rest goes on from whichever start then has the lowest loss.
    """
    device = fixed.device
    extent = float(np.mean([(n - 1) * s for n, s in zip(fixed_grid.size_xyz, fixed_grid.spacing)]))
    trial_steps = min(START_TRIAL_STEPS, iterations[0])
    if trial_steps == 0:  # no steps asked for: the start stays as given
        starts = ()
    candidates = [CentredAffine(start, centre, extent, device) for start in (init, *starts)]
    loss_function = affine_similarity(similarity)
    longest = iterations if longest is None else [max(a, b) for a, b in zip(iterations, longest)]
    total = float(sum(longest) + trial_steps * len(starts))
    done = [0]

    def report(scale: float, steps: int, step: int, loss: torch.Tensor, start: str = "") -> None:
        done[0] += 1
        if progress is not None and (step % 5 == 0 or step == steps - 1):
            count = f"{step + 1}/{steps}" if step < steps else f"{step + 1} (going on while the loss falls)"
            progress(done[0] / total, f"scale {scale:g}, {start}step {count}, loss {loss.item():.4f}")

    for scale, steps, most in zip(scales, iterations, longest):
        fixed_s, fixed_grid_s = downsample(fixed, fixed_grid, scale)
        moving_s, moving_grid_s = downsample(moving, moving_grid, scale)
        masks_s = masks.at_scale(fixed_grid, moving_grid, scale)
        points = physical_points(fixed_grid_s, device=device)
        if isinstance(loss_function, MutualInformation):
            fixed_s, points, masks_s = _sampled_voxels(loss_function, fixed_s, points, masks_s)
        loss_against_fixed = loss_function.against(fixed_s)
        to_coordinates = torch.as_tensor(physical_to_normalised_matrix(moving_grid_s), dtype=torch.float32,
                                         device=device)

        def level_loss(unknowns: CentredAffine) -> torch.Tensor:
            matrix, translation = unknowns()
            # the moving grid's grid_sample coordinates of each fixed point: one 3 x 3 product per voxel
            coordinates = apply_affine(to_coordinates[:3, :3] @ matrix,
                                       to_coordinates[:3, :3] @ translation + to_coordinates[:3, 3],
                                       points).permute(0, 2, 3, 4, 1)
            return loss_against_fixed(warp_image_at(moving_s, moving_grid_s, coordinates),
                                      masks_s.weight(moving_grid_s, coordinates, differentiable=True))

        # finer scales refine: halve the step with every doubling of resolution (avoids oscillation at 1.0)
        if len(candidates) > 1:  # every start a trial of the level's first steps; the best goes on
            trials = [_Descent(unknowns, learning_rate * scales[0] / scale) for unknowns in candidates]
            for index, trial in enumerate(trials):
                trial.run(level_loss, trial_steps, steps, most, plateau, patience,
                          lambda step, loss: report(scale, steps, step, loss, f"start {index + 1}/{len(trials)}, "))
            with torch.no_grad():
                ended = [float(level_loss(trial.unknowns)) for trial in trials]
            descent = trials[int(np.argmin(ended))]
            candidates = [descent.unknowns]
        else:
            descent = _Descent(candidates[0], learning_rate * scales[0] / scale)
        descent.run(level_loss, most, steps, most, plateau, patience,
                    lambda step, loss: report(scale, steps, step, loss))
    return candidates[0].result()


class _Descent:
    """Adam on one :class:`CentredAffine` at one level, run in stretches: ``run`` goes on from where it stopped."""

    def __init__(self, unknowns: "CentredAffine", learning_rate: float):
        self.unknowns = unknowns
        self.optimiser = LightAdam(unknowns.parameters(), lr=learning_rate)
        self.step = 0
        self.losses: list[float] = []

    def run(self, level_loss: Callable[["CentredAffine"], torch.Tensor], until: int, steps: int, most: int,
            plateau: float, patience: int, report: Callable[[int, torch.Tensor], None]) -> None:
        """Steps up to ``until``: ``steps`` of them at least, then while the loss still falls, ``most`` at most."""
        while self.step < min(until, most):
            if self.step >= steps and not _still_falling(self.losses, plateau, patience):
                return
            self.optimiser.zero_grad()
            loss = level_loss(self.unknowns)
            loss.backward()
            self.optimiser.step()
            if most > steps:
                self.losses.append(loss.item())
            report(self.step, loss)
            self.step += 1


def pitched_starts(init: AffineParameters, centre: Sequence[float],
                   degrees: Sequence[float]) -> list[AffineParameters]:
    """``init`` after a rotation of the fixed points about the left-right axis through ``centre`` (LPS mm) by each of
    ``degrees``: y = A (R (x - c) + c) + b. Heads differ most in how far they are nodded forwards (pitch)."""
    c = np.asarray(centre, dtype=np.float64)
    starts = []
    for angle in np.radians(np.asarray(degrees, dtype=np.float64)):
        cos, sin = np.cos(angle), np.sin(angle)
        rotation = np.array([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])
        starts.append(AffineParameters(init.matrix @ rotation, init.matrix @ (c - rotation @ c) + init.translation))
    return starts


class CentredAffine:
    """The unknowns of an affine optimisation: ``y = (I + L)(x - c) + c + t`` about a centre ``c`` (LPS mm), so that
    rotations about the anatomy and translations are decoupled, with ``t`` in units of the domain ``extent`` (mm) so
    that one Adam step moves both by comparable amounts."""

    def __init__(self, init: AffineParameters, centre: Sequence[float], extent: float, device):
        c = np.asarray(centre, dtype=np.float64)
        self.centre = torch.as_tensor(c, dtype=torch.float32, device=device)
        self.extent = extent
        self.eye = torch.eye(3, device=device)
        self.linear = torch.as_tensor(init.matrix - np.eye(3), dtype=torch.float32, device=device).requires_grad_(True)
        # t such that (I + L)(x - c) + c + t = A x + b  =>  t = b + A c - c
        shift = (init.translation + init.matrix @ c - c) / extent
        self.shift = torch.as_tensor(shift, dtype=torch.float32, device=device).requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.linear, self.shift]

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(matrix, translation) of the map fixed -> moving, differentiable in the unknowns."""
        matrix = self.eye + self.linear
        return matrix, self.centre + self.shift * self.extent - matrix @ self.centre

    def result(self) -> AffineParameters:
        with torch.no_grad():
            matrix, translation = self()
        return AffineParameters(matrix.double().cpu().numpy(), translation.double().cpu().numpy())


def _sampled_voxels(similarity: MutualInformation, fixed: torch.Tensor, points: torch.Tensor,
                    masks: SimilarityMasks) -> tuple[torch.Tensor, torch.Tensor, SimilarityMasks]:
    """Mutual information's histogram takes a fixed subset of the fixed voxels: keep only those (``1 x 1 x N x 1 x 1``
    values, ``1 x 3 x N x 1 x 1`` points, the fixed mask likewise), so that each iteration warps N voxels, not the
    whole grid. The loss and its gradient are the same."""
    indices = similarity.sample_indices(fixed.numel(), fixed.device)
    if indices is None:
        return fixed, points, masks
    count = len(indices)

    def take(volume: torch.Tensor) -> torch.Tensor:
        return volume.reshape(volume.shape[1], -1)[:, indices].reshape(1, volume.shape[1], count, 1, 1)

    return take(fixed), take(points), SimilarityMasks(None if masks.fixed is None else take(masks.fixed), masks.moving)


def _still_falling(losses: Sequence[float], plateau: float, patience: int) -> bool:
    """Whether the mean of the last ``patience`` losses is at least ``plateau`` (relative) below the mean of the
    ``patience`` before them."""
    if len(losses) < 2 * patience:
        return True
    recent = float(np.mean(losses[-patience:]))
    before = float(np.mean(losses[-2 * patience:-patience]))
    return before - recent >= plateau * abs(before)


# Refining a network's affine for one pair: Adam iterations at 1/4, then 1/2 of the working grid, from the
# network's affine (chosen on the validation subjects 1036/1038/1039: benchmarks/tuning/README.md).
REFINE_SCALES = (0.25, 0.5)
# With mutual information (a change of contrast) a third level at the working grid follows, two thirds as long again:
# on coarse levels alone MI stops short (ICBM T1 <- T2-like pairs: Dice 0.66-0.70 after 30 iterations, 0.93-0.94
# with 20 more at the working grid; benchmarks/tuning/README.md).
MI_REFINE_SCALES = (0.25, 0.5, 1.0)


# The coarsest level goes on, up to 5 times its count, while its loss still falls by 1 % per 10 iterations: a brain
# from the network's affine has settled by then (validation pairs: Dice 0.4739 -> 0.4730, same time), a whole head
# from a network affine near the centre-of-mass start has not (whole-head T1 pairs: fast 0.379 -> 0.510;
# benchmarks/tuning/README.md). Mutual information's loss moves in a narrow band (0.85-0.95 on whole heads), so it
# goes on while it falls by 0.1 %.
REFINE_COARSE_EXTENSION = 5
REFINE_PLATEAU = {"lncc": 0.01, "mi": 0.001}
# When the networks' deformation is not kept (a pair outside their domain: a whole head, the ICBM template on an
# oblique grid), their affine is the result; it takes this many more steps at the affine method's 3 mm grid
# (whole-head T1 pairs 4-7 and ICBM warps 2-3 of benchmarks/whole_head.py: fast 0.485 -> 0.487 and 0.924 -> 0.951,
# where the affine method reaches 0.488 and 0.947; 30 steps gave the same for a second more; at the networks' own
# 2.5 mm grid the whole heads lost 0.9 points; benchmarks/tuning/README.md).
FINISH_ITERATIONS = 15


def refinement_schedule(iterations: int, similarity: str = "lncc") -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Scales and per-scale iteration counts of ``iterations`` refinement steps: two thirds at 1/4, the rest at 1/2;
    for ``similarity="mi"``, then two thirds of ``iterations`` more at the working grid.

    >>> refinement_schedule(30)
    ((0.25, 0.5), (20, 10))
    >>> refinement_schedule(30, "mi")
    ((0.25, 0.5, 1.0), (20, 10, 20))
    """
    if iterations < 0:
        raise ValueError(f"refinement iterations must be >= 0 (got {iterations})")
    coarse = -(-2 * iterations // 3)
    if similarity == "mi":
        return MI_REFINE_SCALES, (coarse, iterations - coarse, coarse)
    return REFINE_SCALES, (coarse, iterations - coarse)


def refine_affine(fixed: torch.Tensor, fixed_grid: Grid, moving: torch.Tensor, moving_grid: Grid,
                  init: AffineParameters, centre: Sequence[float], iterations: int,
                  masks: SimilarityMasks = SimilarityMasks(), similarity: str = "lncc") -> AffineParameters:
    """The network methods' affine refinement of one pair: :func:`optimise_affine` from ``init`` for ``iterations``
    Adam steps (and, with mutual information, two thirds as many again at the working grid) on the
    :func:`refinement_schedule`, the coarsest level going on while its loss still falls (``centre``: the fixed
    centre of mass, LPS mm)."""
    scales, counts = refinement_schedule(iterations, similarity)
    longest = (counts[0] * REFINE_COARSE_EXTENSION, *counts[1:])
    return optimise_affine(fixed, fixed_grid, moving, moving_grid, init, centre, scales=scales, iterations=counts,
                           masks=masks, similarity=similarity, longest=longest, plateau=REFINE_PLATEAU[similarity])


def finish_affine(fixed: torch.Tensor, fixed_grid: Grid, moving: torch.Tensor, moving_grid: Grid,
                  init: AffineParameters, centre: Sequence[float], masks: SimilarityMasks = SimilarityMasks(),
                  similarity: str = "lncc", iterations: int = FINISH_ITERATIONS) -> AffineParameters:
    """``iterations`` steps of :func:`optimise_affine`'s last level alone, from ``init``: at the working grid
    (``fixed_grid``, the affine method's 3 mm), at the step size it takes there. For a network's affine, refined only
    at 1/4 and 1/2 of the network's grid, when the network's deformation is not kept."""
    return optimise_affine(fixed, fixed_grid, moving, moving_grid, init, centre, scales=AFFINE_SCALES[-1:],
                           iterations=(iterations,),
                           learning_rate=AFFINE_LEARNING_RATE * AFFINE_SCALES[0] / AFFINE_SCALES[-1], masks=masks,
                           similarity=similarity)


def refine_affines(fixed: torch.Tensor, moving: torch.Tensor, grid: Grid, matrix: torch.Tensor,
                   translation: torch.Tensor, iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Refine a batch of affines with :func:`refine_affine`, as :func:`avsm.register` refines the network's at
    test time (training-time use).

    ``fixed`` and ``moving`` are ``B x 1 x D x H x W`` tensors in [0, 1] on the same ``grid``; ``matrix``
    (``B x 3 x 3``) and ``translation`` (``B x 3``) map fixed to moving physical points. Each pair's linear part
    is centred on the fixed image's intensity centre of mass. Returns detached tensors of the input's shapes,
    dtype and device: the inputs themselves for 0 iterations.
    """
    if iterations == 0:
        return matrix.detach(), translation.detach()
    points = physical_points(grid, device=fixed.device, dtype=fixed.dtype).reshape(3, -1)  # 3 x N
    matrices, translations = [], []
    for b in range(fixed.shape[0]):
        weights = fixed[b, 0].detach().flatten().clamp_min(0)
        centre = ((points * weights).sum(dim=1) / weights.sum().clamp_min(1e-12)).double().cpu().numpy()
        init = AffineParameters(matrix[b].detach().double().cpu().numpy(),
                                translation[b].detach().double().cpu().numpy())
        with torch.enable_grad():
            refined = refine_affine(fixed[b:b + 1].detach(), grid, moving[b:b + 1].detach(), grid, init, centre,
                                    iterations)
        matrices.append(refined.matrix)
        translations.append(refined.translation)
    return (torch.as_tensor(np.stack(matrices), dtype=matrix.dtype, device=matrix.device),
            torch.as_tensor(np.stack(translations), dtype=translation.dtype, device=translation.device))

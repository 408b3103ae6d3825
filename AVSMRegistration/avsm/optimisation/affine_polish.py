"""The last step of an affine found with mutual information: a few Adam iterations at the images' own resolution.

The working grids (3 mm for the affine method, 2.5 mm after a network) leave an affine about a millimetre from
where the scans' own voxels put it; with a change of contrast, on real T1/T2/FLAIR scans of one head, that was 1 mm
against ANTs' 0.3-0.5 (``benchmarks/results/real_pairs.md``). Mutual information needs only a sample of voxels, so
the step takes the full-resolution sample of the deformation judge (50,000 fixed voxels and the moving image as
acquired) and costs about a second whatever the scans' size.

With local correlation the working-grid affine is already the better fit between two subjects: mutual information
over the whole image pulls it towards scalp and skull. There the polish is kept only when it agrees with the
working-grid affine (:func:`agreeing_polish`: no step moves the sampled voxels by ``AGREEMENT_MM`` or more, as when
both images show one anatomy); it stops as soon as one does, so a polish that is not kept costs less.
"""
from __future__ import annotations

from typing import Iterator, Optional, Sequence

import numpy as np

from ..losses import MutualInformation
from ..maps import apply_affine
from .affine_opt import AffineParameters, CentredAffine
from .deformation_check import DeformationJudge
from .light_adam import LightAdam

# The first setting tried (not tuned): 30 steps, each at most about 0.1 % of the domain (0.2 mm) or 0.06 degrees.
POLISH_ITERATIONS = 30
POLISH_LEARNING_RATE = 0.001
# Root mean square move (mm) of the sampled fixed voxels that a polish after local correlation must stay below.
# Chosen on non-benchmark pairs (benchmarks/tuning/polish_agreement.md): on the ICBM template against warped copies
# of itself the polish moved them at most 0.58-0.59 mm and gained 1.2-1.4 Dice points; on pairs of two subjects
# (whole heads, malf2012 training subjects) 1.09-2.12 mm, and lost up to 4.2 points.
AGREEMENT_MM = 0.75


def polish_affine(samples: DeformationJudge, init: AffineParameters, centre: Sequence[float],
                  iterations: int = POLISH_ITERATIONS, learning_rate: float = POLISH_LEARNING_RATE) -> AffineParameters:
    """Adam on the affine (about ``centre``, LPS mm) minimising normalised mutual information between the sampled
    fixed voxels and the moving image at its own resolution, from ``init``."""
    affine = init
    for affine in _polish_steps(samples, init, centre, iterations, learning_rate):
        pass
    return affine


def agreeing_polish(samples: DeformationJudge, init: AffineParameters, centre: Sequence[float],
                    limit_mm: float = AGREEMENT_MM, iterations: int = POLISH_ITERATIONS,
                    learning_rate: float = POLISH_LEARNING_RATE) -> tuple[Optional[AffineParameters], float]:
    """:func:`polish_affine` while it agrees with ``init``: (its result, the largest move) when no step moved the
    sampled voxels by ``limit_mm`` or more (:func:`polish_move_mm`), else (None, the move of the step that did),
    stopping there."""
    affine, largest, points = init, 0.0, _points_mm(samples)
    for affine in _polish_steps(samples, init, centre, iterations, learning_rate):
        move = _rms_move(points, init, affine)
        if move >= limit_mm:
            return None, move
        largest = max(largest, move)
    return affine, largest


def _polish_steps(samples: DeformationJudge, init: AffineParameters, centre: Sequence[float], iterations: int,
                  learning_rate: float) -> Iterator[AffineParameters]:
    """The affine after each of ``iterations`` Adam steps of :func:`polish_affine`."""
    points = samples.points
    span = points.reshape(3, -1)
    extent = float((span.max(dim=1).values - span.min(dim=1).values).mean())
    unknowns = CentredAffine(init, centre, extent, points.device)
    loss = MutualInformation().against(samples.values)
    optimiser = LightAdam(unknowns.parameters(), lr=learning_rate)
    for _ in range(iterations):
        optimiser.zero_grad()
        matrix, translation = unknowns()
        loss(*samples.warped_at(apply_affine(matrix, translation, points))).backward()
        optimiser.step()
        yield unknowns.result()


def polish_move_mm(samples: DeformationJudge, before: AffineParameters, after: AffineParameters) -> float:
    """Root mean square distance (mm) between where ``before`` and ``after`` send the sampled fixed voxels."""
    return _rms_move(_points_mm(samples), before, after)


def _points_mm(samples: DeformationJudge) -> np.ndarray:
    """The sampled fixed voxels, ``3 x N`` LPS mm."""
    return samples.points.reshape(3, -1).double().cpu().numpy()


def _rms_move(points: np.ndarray, before: AffineParameters, after: AffineParameters) -> float:
    moved = (after.matrix - before.matrix) @ points + (after.translation - before.translation)[:, None]
    return float(np.sqrt((moved ** 2).sum(axis=0).mean()))

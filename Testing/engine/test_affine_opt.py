"""avsm.optimisation.affine_opt: the refinement schedule of one pair, and ``refine_affines``, which refines a
batch of affines pair by pair, against known translations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avsm.geometry import Grid, physical_points
from avsm.maps import apply_affine, warp_image
from avsm.optimisation import refine_affines
from avsm.optimisation.affine_opt import refinement_schedule

GRID = Grid(shape=(40, 40, 40), spacing=(2.0, 2.0, 2.0), origin=(-39.0, -39.0, -39.0),
            direction=tuple(np.eye(3).ravel()))
SHIFTS = torch.tensor([[5.0, -3.0, 2.0], [-4.0, 2.0, 6.0]])  # mm, true fixed -> moving translation of each pair


def _blobs() -> torch.Tensor:
    """``1 x 1 x D x H x W`` smooth, asymmetric image in [0, 1]: an ellipsoid and a smaller off-centre blob."""
    x, y, z = physical_points(GRID)[0]
    image = torch.exp(-(x**2 / 400 + y**2 / 250 + z**2 / 150)) + 0.6 * torch.exp(-((x - 12)**2 + (y + 8)**2 + z**2) / 60)
    return (image / image.max())[None, None]


def _shifted_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed: the blobs twice; moving b: the blobs moved by SHIFTS[b], so that moving(x + SHIFTS[b]) = fixed(x)."""
    fixed = _blobs()
    points = physical_points(GRID)
    moving = [warp_image(fixed, GRID, apply_affine(torch.eye(3)[None], -shift[None], points)) for shift in SHIFTS]
    return torch.cat([fixed, fixed]), torch.cat(moving)


def test_refine_affines_recovers_each_pairs_translation():
    fixed, moving = _shifted_pairs()
    matrix, translation = torch.eye(3).expand(2, 3, 3).clone(), torch.zeros(2, 3)
    before = (fixed.clone(), moving.clone(), matrix.clone(), translation.clone())
    refined_matrix, refined_translation = refine_affines(fixed, moving, GRID, matrix, translation, 30)
    assert refined_matrix.shape == (2, 3, 3) and refined_translation.shape == (2, 3)
    assert refined_matrix.dtype == matrix.dtype and not refined_matrix.requires_grad
    points = physical_points(GRID).reshape(3, -1)[:, fixed[0, 0].reshape(-1) > 0.3]  # the blobs' voxels
    for b in range(2):  # mean distance between where the refined and the true map send them
        error = (refined_matrix[b] @ points + (refined_translation[b] - SHIFTS[b])[:, None] - points).norm(dim=0).mean()
        # measured: 6.2 and 7.5 mm from the identity -> 0.69 and 0.93 mm
        assert error < 0.2 * SHIFTS[b].norm(), (b, float(error))
    for original, now in zip(before, (fixed, moving, matrix, translation)):
        assert torch.equal(original, now)  # the inputs are not touched


def test_zero_iterations_return_the_affines_unchanged():
    fixed, moving = _shifted_pairs()
    matrix, translation = torch.eye(3).expand(2, 3, 3) * 1.01, SHIFTS * 0.5
    same_matrix, same_translation = refine_affines(fixed, moving, GRID, matrix, translation, 0)
    assert torch.equal(same_matrix, matrix) and torch.equal(same_translation, translation)


@pytest.mark.parametrize("iterations, expected", [(30, (20, 10)), (15, (10, 5)), (1, (1, 0)), (0, (0, 0))])
def test_refinement_schedule_puts_two_thirds_at_the_coarse_scale(iterations, expected):
    scales, counts = refinement_schedule(iterations)
    assert scales == (0.25, 0.5) and counts == expected and sum(counts) == iterations


@pytest.mark.parametrize("iterations, expected", [(30, (20, 10, 20)), (15, (10, 5, 10)), (0, (0, 0, 0))])
def test_with_mutual_information_the_refinement_ends_at_the_working_grid(iterations, expected):
    scales, counts = refinement_schedule(iterations, "mi")
    assert scales == (0.25, 0.5, 1.0) and counts == expected


def test_refinement_schedule_refuses_a_negative_count():
    with pytest.raises(ValueError, match="must be >= 0"):
        refinement_schedule(-1)


def _inverted_pair_at_4mm(**pair_options):
    """``inverted_contrast_pair`` on 4 mm working grids: ((fixed_w, fixed_grid, moving_w, moving_grid), the
    centre-of-mass start, the fixed centre of mass, and the mean error in mm of a found affine against the truth)."""
    from avsm import pipeline
    from avsm.geometry import physical_points
    from avsm.optimisation import AffineParameters
    from avsm.preprocess import centre_of_mass, normalise_intensity

    from engine_fixtures import inverted_contrast_pair

    fixed, moving, truth = inverted_contrast_pair(**pair_options)
    fixed_n, moving_n = normalise_intensity(fixed), normalise_intensity(moving)
    images = pipeline._working_pair(fixed_n, moving_n, 4.0)
    centre = centre_of_mass(fixed_n)
    start = AffineParameters.translation_only(centre_of_mass(moving_n) - centre)
    points = physical_points(images[1]).reshape(3, -1).T.numpy()[::20]
    expected = np.array([truth.TransformPoint(tuple(float(v) for v in p)) for p in points])

    def error(found: AffineParameters) -> float:
        return float(np.linalg.norm(points @ found.matrix.T + found.translation - expected, axis=1).mean())

    return images, start, centre, error


def test_mutual_information_recovers_a_known_affine_across_an_inverted_contrast():
    """The sample T1 against a copy whose brain contrast is inverted (T2-like) and that is rotated and shifted:
    mk-LNCC misses the transform, normalised mutual information finds it."""
    from avsm.optimisation import optimise_affine

    images, start, fixed_centre, error = _inverted_pair_at_4mm()
    errors = {similarity: error(optimise_affine(*images, start, fixed_centre, similarity=similarity))
              for similarity in ("lncc", "mi")}
    assert errors["mi"] < 2.5 < 10 < errors["lncc"]  # within about half a 4 mm voxel; mk-LNCC is lost


def test_still_falling_compares_the_last_two_windows_of_losses():
    from avsm.optimisation.affine_opt import _still_falling

    assert _still_falling([1.0] * 5, 0.01, 10)  # too few steps to judge
    assert _still_falling([1.0] * 10 + [0.95] * 10, 0.01, 10)  # 5 % lower
    assert not _still_falling([1.0] * 10 + [0.995] * 10, 0.01, 10)  # 0.5 % lower: a plateau
    assert not _still_falling([1.0] * 10 + [1.1] * 10, 0.01, 10)  # rising


def _fractions_of_a_run(start_shift: float) -> tuple[list[float], np.ndarray]:
    """Progress fractions and the found translation of one pair (moving = blobs moved by SHIFTS[0]) refined from
    the identity moved by ``start_shift`` times the truth, with a coarse level of 10 steps that may run to 80."""
    from avsm.optimisation.affine_opt import AffineParameters, optimise_affine

    fixed, moving = _shifted_pairs()
    fractions: list[float] = []
    found = optimise_affine(fixed[:1], GRID, moving[:1], GRID, AffineParameters.translation_only(start_shift * SHIFTS[0]),
                            (0.0, 0.0, 0.0), scales=(0.25,), iterations=(10,), longest=(80,),
                            progress=lambda fraction, message: fractions.append(fraction))
    return fractions, found.translation


def test_a_level_goes_on_while_its_loss_falls_and_stops_on_a_plateau():
    far, found_far = _fractions_of_a_run(0.0)
    near, found_near = _fractions_of_a_run(1.0)
    assert far[-1] > 20 / 80  # 10 steps were not enough from 6 mm away: it went on
    assert near[-1] < far[-1] and near[-1] < 1.0  # started at the answer it stopped before the longest
    for found in (found_far, found_near):
        assert np.abs(found - SHIFTS[0].numpy()).max() < 1.5


def test_pitched_starts_rotate_the_fixed_points_about_the_centre_before_the_start():
    from avsm.optimisation.affine_opt import AffineParameters, pitched_starts

    start = AffineParameters(np.diag([1.1, 0.9, 1.0]), np.array([3.0, -2.0, 5.0]))
    centre = np.array([10.0, 20.0, -5.0])
    unturned, turned = pitched_starts(start, centre, [0.0, 90.0])
    assert np.allclose(unturned.as_4x4(), start.as_4x4())
    # 90 degrees about the left-right (x) axis through the centre: y -> z, z -> -y relative to it, then the start
    x = np.array([12.0, 21.0, -3.0])
    turned_x = centre + np.array([2.0, -2.0, 1.0])
    assert np.allclose(turned.matrix @ x + turned.translation, start.matrix @ turned_x + start.translation)
    assert np.allclose(turned.matrix @ centre + turned.translation, start.matrix @ centre + start.translation)


def test_a_pitched_start_finds_a_rotation_the_centre_of_mass_start_misses():
    """The sample T1 against a T2-like copy nodded by 60 degrees: from the centre of mass mutual information ends
    far away; with starts at +-60 degrees of pitch the finer levels go on from the one whose coarse loss is lowest,
    whether that is a start or the first guess."""
    from avsm.optimisation import optimise_affine
    from avsm.optimisation.affine_opt import pitched_starts

    images, start, centre, error = _inverted_pair_at_4mm(angles=(1.05, 0.05, -0.05))
    options = dict(similarity="mi", iterations=(60, 40, 20))
    alone = optimise_affine(*images, start, centre, **options)
    searched = optimise_affine(*images, start, centre, **options, starts=pitched_starts(start, centre, [-60.0, 60.0]))
    near = pitched_starts(start, centre, [60.0])[0]  # the right start first, the wrong ones as alternatives
    kept = optimise_affine(*images, near, centre, **options, starts=[start, pitched_starts(start, centre, [-60.0])[0]])
    assert error(searched) < 3.0 < 15.0 < error(alone)
    assert error(kept) < 3.0


def test_with_no_steps_asked_for_the_start_stays_as_given_whatever_the_alternatives():
    from avsm.optimisation import optimise_affine
    from avsm.optimisation.affine_opt import pitched_starts

    images, start, centre, _ = _inverted_pair_at_4mm(angles=(1.05, 0.05, -0.05))
    found = optimise_affine(*images, start, centre, similarity="mi", iterations=(0, 0, 0),
                            starts=pitched_starts(start, centre, [-60.0, 60.0]))
    assert np.allclose(found.as_4x4(), start.as_4x4(), atol=1e-5)

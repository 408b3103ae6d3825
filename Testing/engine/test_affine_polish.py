"""avsm.optimisation.affine_polish: the affine's last step at the images' own resolution, the rule that keeps it
after local correlation, and the sampled-voxel path of the affine optimisation with mutual information."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from avsm.optimisation import AffineParameters
from avsm.optimisation.affine_polish import AGREEMENT_MM, agreeing_polish, polish_affine, polish_move_mm
from avsm.optimisation.deformation_check import DeformationJudge
from avsm.preprocess import centre_of_mass, normalise_intensity

from engine_fixtures import SAMPLE_DATA, inverted_contrast_pair


def _inverted_pair():
    """The T1 and its T2-like copy (normalised) under a small known rigid transform, and the truth."""
    fixed, moving, truth = inverted_contrast_pair((0.05, -0.04, 0.06), (3.0, -2.0, 1.5))
    return normalise_intensity(fixed), normalise_intensity(moving), truth


def _error(affine: AffineParameters, truth: sitk.Transform, points: np.ndarray) -> float:
    expected = np.array([truth.TransformPoint(tuple(float(v) for v in p)) for p in points])
    return float(np.linalg.norm(points @ affine.matrix.T + affine.translation - expected, axis=1).mean())


def test_the_polish_brings_a_nearby_affine_to_the_truth_across_a_change_of_contrast():
    fixed, moving, truth = _inverted_pair()
    samples = DeformationJudge.of(fixed, moving)
    off = sitk.Euler3DTransform(truth.GetCenter(), 0.02, 0.015, -0.02, (1.2, 1.0, -0.8))  # a millimetre or two off
    composed = sitk.CompositeTransform([truth, off])
    start = AffineParameters(np.asarray(truth.GetMatrix()).reshape(3, 3) @ np.asarray(off.GetMatrix()).reshape(3, 3),
                             np.asarray(composed.TransformPoint((0.0, 0.0, 0.0))))
    points = samples.points.reshape(3, -1).T.numpy()[::50]
    before = _error(start, truth, points)
    after = _error(polish_affine(samples, start, centre_of_mass(fixed), iterations=60), truth, points)
    assert before > 1.5 and after < 0.35 * before, (before, after)


def test_mutual_information_warps_only_its_sampled_voxels_and_finds_the_same_affine():
    """On a grid larger than the histogram's sample, the affine optimisation warps only the sampled voxels: the
    loss and gradient are those of the whole grid, so the affine found is the same up to rounding."""
    from avsm import pipeline
    from avsm.losses import MutualInformation
    from avsm.optimisation import optimise_affine
    from avsm.optimisation import affine_opt

    fixed, moving, truth = _inverted_pair()
    fixed_w, fixed_grid, moving_w, moving_grid = pipeline._working_pair(fixed, moving, 2.0)
    assert fixed_w.numel() > MutualInformation().max_samples
    start = AffineParameters.translation_only(centre_of_mass(moving) - centre_of_mass(fixed))
    options = dict(scales=(1.0,), iterations=(15,), similarity="mi")
    sampled = optimise_affine(fixed_w, fixed_grid, moving_w, moving_grid, start, centre_of_mass(fixed), **options)
    original = affine_opt._sampled_voxels
    affine_opt._sampled_voxels = lambda similarity, fixed, points, masks: (fixed, points, masks)  # every voxel
    try:
        whole = optimise_affine(fixed_w, fixed_grid, moving_w, moving_grid, start, centre_of_mass(fixed), **options)
    finally:
        affine_opt._sampled_voxels = original
    assert np.abs(sampled.matrix - whole.matrix).max() < 1e-4
    assert np.abs(sampled.translation - whole.translation).max() < 1e-2


def test_register_with_mutual_information_polishes_the_affine_and_reports_it():
    import avsm

    pair = (SAMPLE_DATA / "fixed_t1_2mm.nii.gz", SAMPLE_DATA / "moving_t1_2mm.nii.gz")
    options = dict(preset="fast", device="cpu", working_spacing=4.0, affine_refine=10)  # the networks run
    with_mi = avsm.register(*pair, similarity="mi", **options).report
    with_lncc = avsm.register(*pair, **options).report
    assert "affine_polish" in with_mi["network"]["timings"]
    assert "affine_polish" not in with_lncc["network"]["timings"]


def test_the_polish_move_is_the_root_mean_square_distance_between_where_two_affines_send_the_samples():
    fixed, moving, _ = _inverted_pair()
    samples = DeformationJudge.of(fixed, moving)
    start = AffineParameters(np.eye(3), np.array([1.0, -2.0, 0.5]))
    assert polish_move_mm(samples, start, start) == 0.0
    shifted = AffineParameters(np.eye(3), start.translation + np.array([3.0, 0.0, -4.0]))
    assert abs(polish_move_mm(samples, start, shifted) - 5.0) < 1e-9
    scaled = AffineParameters(1.02 * np.eye(3), start.translation)  # moves a point x by 0.02 |x|
    points = samples.points.reshape(3, -1).double().numpy()
    expected = 0.02 * np.sqrt((points ** 2).sum(axis=0).mean())
    assert abs(polish_move_mm(samples, start, scaled) - expected) < 1e-6 * expected


def test_after_local_correlation_the_polish_is_kept_only_where_it_agrees_with_the_working_grid_affine(monkeypatch):
    """The sample T1 against a rigidly moved copy of itself (one anatomy): the polish moves the affine by a fraction
    of a millimetre and is kept, within 0.35 mm of the truth. Two subjects (the sample pair): it moves the affine
    towards what mutual information over the whole image prefers, stops once the move reaches the limit and is not
    kept.
    With mutual information it is always kept; with no affine iterations there is none."""
    from avsm import pipeline, register

    fixed = sitk.ReadImage(str(SAMPLE_DATA / "fixed_t1_2mm.nii.gz"), sitk.sitkFloat32)
    centre = fixed.TransformContinuousIndexToPhysicalPoint([n / 2 for n in fixed.GetSize()])
    truth = sitk.Euler3DTransform(centre, 0.06, -0.04, 0.05, (3.0, -2.0, 2.0))
    moving = sitk.Resample(fixed, fixed, truth.GetInverse(), sitk.sitkLinear, 0.0)
    points = np.array([fixed.TransformIndexToPhysicalPoint((i, j, k))
                       for i in range(10, 80, 15) for j in range(10, 100, 15) for k in range(10, 80, 15)])

    def error_mm(report: dict) -> float:
        matrix = np.array(report["affine_matrix"])
        return _error(AffineParameters(matrix[:3, :3], matrix[:3, 3]), truth, points)

    options = dict(method="affine", similarity="lncc", device="cpu")
    one_anatomy = register(fixed, moving, **options).report
    assert one_anatomy["affine_polish"]["kept"] is True
    assert one_anatomy["affine_polish"]["move_mm"] < AGREEMENT_MM and error_mm(one_anatomy) < 0.35
    monkeypatch.setattr(pipeline, "AGREEMENT_MM", 0.0)  # the first step already moves too far: the polish stops
    unpolished = register(fixed, moving, **options).report
    assert unpolished["affine_polish"]["kept"] is False
    assert 0.0 < unpolished["affine_polish"]["move_mm"] < one_anatomy["affine_polish"]["move_mm"]
    assert np.abs(np.array(unpolished["affine_matrix"]) - np.array(one_anatomy["affine_matrix"])).max() > 1e-4
    monkeypatch.setattr(pipeline, "AGREEMENT_MM", AGREEMENT_MM)
    pair = (SAMPLE_DATA / "fixed_t1_2mm.nii.gz", SAMPLE_DATA / "moving_t1_2mm.nii.gz")
    two_subjects = register(*pair, **options).report["affine_polish"]
    assert two_subjects["kept"] is False and two_subjects["move_mm"] >= AGREEMENT_MM
    with_mi = register(*pair, method="affine", similarity="mi", device="cpu").report["affine_polish"]
    assert with_mi["kept"] is True
    assert register(*pair, method="affine", device="cpu", affine_iterations=0).report["affine_polish"] is None


def test_the_agreeing_polish_is_the_polish_itself_or_stops_at_the_first_step_that_moves_too_far():
    fixed, moving, truth = _inverted_pair()
    samples = DeformationJudge.of(fixed, moving)
    start = AffineParameters(np.eye(3), np.array([2.0, -1.5, 1.0]))
    centre = centre_of_mass(fixed)
    polished = polish_affine(samples, start, centre, iterations=12)
    whole_move = polish_move_mm(samples, start, polished)
    agreed, largest = agreeing_polish(samples, start, centre, limit_mm=np.inf, iterations=12)
    assert np.array_equal(agreed.matrix, polished.matrix) and np.array_equal(agreed.translation, polished.translation)
    assert largest >= whole_move > 0.0
    stopped, move = agreeing_polish(samples, start, centre, limit_mm=0.5 * whole_move, iterations=12)
    assert stopped is None and 0.5 * whole_move <= move

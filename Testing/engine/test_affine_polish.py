"""avsm.optimisation.affine_polish: the last step of a mutual-information affine at the images' own resolution, and
the sampled-voxel path of the affine optimisation with mutual information."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from avsm.optimisation import AffineParameters
from avsm.optimisation.affine_polish import polish_affine
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

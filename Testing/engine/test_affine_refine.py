"""Refining the affine network's result for one pair (``register(..., affine_refine=N)``, ``--affine-refine``).

The refinement starts from the network's affine and runs N Adam iterations of mk-LNCC at 1/4 and 1/2 of the
working grid before the deformable network. Checked against a known affine: the demo fixed image resampled
by SimpleITK through a rotation, scaling and shift, so the true fixed -> moving map is that transform's inverse.
"""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from avsm import AVSMError, register
from avsm.optimisation.affine_opt import refinement_schedule

from engine_fixtures import SAMPLE_DATA


@pytest.mark.parametrize("iterations, expected", [(30, (20, 10)), (15, (10, 5)), (1, (1, 0)), (0, (0, 0))])
def test_refinement_schedule_puts_two_thirds_at_the_coarse_scale(iterations, expected):
    scales, counts = refinement_schedule(iterations)
    assert scales == (0.25, 0.5) and counts == expected and sum(counts) == iterations


def test_refinement_schedule_refuses_a_negative_count():
    with pytest.raises(ValueError, match="must be >= 0"):
        refinement_schedule(-1)


@pytest.fixture(scope="module")
def known_affine_pair(tmp_path_factory):
    """(fixed path, moving path, true fixed -> moving map as a sitk.AffineTransform)."""
    fixed = sitk.ReadImage(str(SAMPLE_DATA / "fixed_t1_2mm.nii.gz"), sitk.sitkFloat32)
    centre = fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in fixed.GetSize()])
    moving_to_fixed = sitk.AffineTransform(3)  # sitk.Resample pulls moving(x) = fixed(T(x))
    moving_to_fixed.SetCenter(centre)
    rotation = sitk.Euler3DTransform(centre, 0.08, -0.05, 0.12)
    moving_to_fixed.SetMatrix((np.asarray(rotation.GetMatrix()).reshape(3, 3) @ np.diag([1.06, 0.95, 1.02])).ravel())
    moving_to_fixed.SetTranslation((6.0, -4.0, 3.0))
    moving = sitk.Resample(fixed, fixed, moving_to_fixed, sitk.sitkLinear, 0.0)
    folder = tmp_path_factory.mktemp("known_affine")
    sitk.WriteImage(fixed, str(folder / "fixed.nii.gz"))
    sitk.WriteImage(moving, str(folder / "moving.nii.gz"))
    return str(folder / "fixed.nii.gz"), str(folder / "moving.nii.gz"), moving_to_fixed.GetInverse()


def _error_mm(found: sitk.Transform, truth: sitk.Transform, image_path: str) -> float:
    """Mean distance (mm) between where the two fixed -> moving maps send the fixed brain's voxels."""
    image = sitk.ReadImage(image_path)
    indices = np.argwhere(sitk.GetArrayFromImage(image) > 0.2 * sitk.GetArrayFromImage(image).max())[::7, ::-1]
    points = [image.TransformIndexToPhysicalPoint([int(i) for i in index]) for index in indices]
    return float(np.mean([np.linalg.norm(np.subtract(found.TransformPoint(p), truth.TransformPoint(p)))
                          for p in points]))


def test_refinement_moves_the_network_affine_towards_the_true_one(known_affine_pair):
    fixed, moving, truth = known_affine_pair
    network = register(fixed, moving, method="avsm", vsvf_steps=0, affine_refine=0, device="cpu")
    refined = register(fixed, moving, method="avsm", vsvf_steps=0, affine_refine=30, device="cpu")
    network_info, refined_info = network.report["network"], refined.report["network"]
    assert network_info["affine_refine"] == 0 and "affine_refine" not in network_info["timings"]
    assert refined_info["affine_refine"] == 30 and refined_info["timings"]["affine_refine"] > 0
    network_error, refined_error = _error_mm(network.affine, truth, fixed), _error_mm(refined.affine, truth, fixed)
    # measured: 6.2 mm -> 0.56 mm
    assert refined_error < 0.25 * network_error and refined_error < 1.0, (network_error, refined_error)


def test_the_default_refines_and_the_deformable_network_starts_from_the_refined_affine(known_affine_pair):
    fixed, moving, _ = known_affine_pair
    default = register(fixed, moving, method="avsm", device="cpu")
    refined = register(fixed, moving, method="avsm", affine_refine=30, device="cpu")
    assert default.report["network"]["affine_refine"] == 30
    assert np.allclose(default.affine.GetParameters(), refined.affine.GetParameters())
    assert default.report["fold_fraction"] == 0


@pytest.mark.parametrize("method", ["affine", "vsvf-opt"])
def test_refinement_is_refused_without_a_network(method, known_affine_pair):
    fixed, moving, _ = known_affine_pair
    with pytest.raises(AVSMError, match=f"--affine-refine applies to the network methods .* not to '{method}'"):
        register(fixed, moving, method=method, affine_refine=10, device="cpu")


def test_a_negative_refinement_count_is_refused(known_affine_pair):
    fixed, moving, _ = known_affine_pair
    with pytest.raises(AVSMError, match="affine_refine must be >= 0"):
        register(fixed, moving, method="voxelmorph", affine_refine=-1, device="cpu")

"""The real-pairs benchmark's measures (benchmarks/real_pairs.py): the registration error between two maps, the
normalised mutual information that picks a reference transform's direction, and the choice itself."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from engine_fixtures import SAMPLE_DATA, load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("real_pairs", "benchmarks/real_pairs.py")


def test_the_error_of_a_translation_is_its_length(bench):
    points = np.random.default_rng(0).uniform(-50, 50, size=(100, 3))
    mean, p95 = bench.map_error(sitk.TranslationTransform(3, (3.0, 4.0, 0.0)), sitk.Transform(), points)
    assert mean == pytest.approx(5.0) and p95 == pytest.approx(5.0)
    rotation = sitk.Euler3DTransform((0.0, 0.0, 0.0), 0.0, 0.0, np.pi / 2)
    mean, _ = bench.map_error(rotation, sitk.Transform(), np.array([[10.0, 0.0, 0.0]]))
    assert mean == pytest.approx(10.0 * np.sqrt(2.0))


def test_nmi_is_two_when_one_image_determines_the_other_and_near_one_when_independent(bench):
    rng = np.random.default_rng(1)
    a = rng.uniform(size=20_000)
    assert bench.nmi(a, 1.0 - a) == pytest.approx(2.0, abs=1e-6)
    assert bench.nmi(a, rng.uniform(size=20_000)) < 1.1


def test_the_reference_direction_is_the_one_that_aligns_the_scans(bench):
    fixed = sitk.ReadImage(str(SAMPLE_DATA / "fixed_t1_2mm.nii.gz"), sitk.sitkFloat32)
    shift = sitk.TranslationTransform(3, (6.0, -4.0, 2.0))  # fixed -> moving points
    moving = sitk.Resample(fixed, fixed, shift.GetInverse(), sitk.sitkLinear, 0.0)
    chosen = bench.better_aligning(fixed, moving, [shift.GetInverse(), shift])
    assert np.allclose(chosen.TransformPoint((0.0, 0.0, 0.0)), (6.0, -4.0, 2.0))

"""avsm.optimisation.contrast_check: the sign of the local correlation tells one contrast from two, and
``similarity="auto"`` goes on by local correlation or turns to mutual information accordingly."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch
from engine_fixtures import SAMPLE_DATA, inverted_contrast_pair

import avsm
from avsm.geometry import Grid, axis_aligned_grid_covering
from avsm.optimisation import AffineParameters
from avsm.optimisation.contrast_check import SAME_CONTRAST_MIN, contrast_agreement, correlation_sign_agreement
from avsm.preprocess import normalise_intensity, resample_to_grid


def _smooth_volume(seed: int = 0, shape=(24, 24, 24)) -> torch.Tensor:
    """A smooth random volume in [0.1, 1] (``1 x 1 x D x H x W``): every window varies."""
    noise = torch.rand((1, 1, *shape), generator=torch.Generator().manual_seed(seed))
    smooth = torch.nn.functional.avg_pool3d(noise, 5, stride=1, padding=2, count_include_pad=False)
    return 0.1 + 0.9 * (smooth - smooth.min()) / (smooth.max() - smooth.min())


def test_one_contrast_agrees_in_every_window_an_inverted_one_in_none():
    fixed = _smooth_volume()
    inside = torch.ones_like(fixed, dtype=torch.bool)
    assert correlation_sign_agreement(fixed, fixed, inside, 5) == 1.0
    assert correlation_sign_agreement(fixed, 0.3 + 2.0 * fixed, inside, 5) == 1.0  # gain and offset do not matter
    assert correlation_sign_agreement(fixed, 1.1 - fixed, inside, 5) == -1.0
    unrelated = correlation_sign_agreement(fixed, _smooth_volume(seed=1), inside, 5)
    assert -0.5 < unrelated < 0.5


def test_windows_outside_the_foreground_or_the_field_of_view_do_not_count():
    fixed = _smooth_volume()
    moving = fixed.clone()
    moving[..., 12:] = 1.1 - moving[..., 12:]  # the contrast inverts in one half
    everywhere = torch.ones_like(fixed, dtype=torch.bool)
    half = everywhere.clone()
    half[..., 10:] = False  # the moving image was acquired only where it agrees
    assert -0.5 < correlation_sign_agreement(fixed, moving, everywhere, 3) < 0.5
    assert correlation_sign_agreement(fixed, moving, half, 3) == 1.0
    background = fixed.clone()
    background[..., 10:] = 0.0  # the fixed foreground ends where the contrast changes
    assert correlation_sign_agreement(background, moving, everywhere, 3) > 0.9
    assert correlation_sign_agreement(torch.zeros_like(fixed), moving, everywhere, 3) == 0.0  # nothing to measure


def _working(image: sitk.Image, spacing: float = 3.0) -> tuple[torch.Tensor, Grid]:
    normalised = normalise_intensity(image)
    grid = axis_aligned_grid_covering(Grid.of_image(normalised), spacing)
    return resample_to_grid(normalised, grid), grid


def test_the_agreement_is_measured_through_the_affine():
    """On the sample T1 and its T2-like copy moved by a known rigid transform: through the true transform one
    contrast agrees and the inverted one does not; the T1 against itself moved, measured without the transform,
    agrees less than through it."""
    fixed, moving_t2, truth = inverted_contrast_pair()
    moving_t1 = sitk.Resample(fixed, fixed, truth.GetInverse(), sitk.sitkLinear, 0.0)
    matrix = np.asarray(truth.GetMatrix()).reshape(3, 3)
    true = AffineParameters(matrix, np.asarray(truth.GetTranslation()) + np.asarray(truth.GetCenter())
                            - matrix @ np.asarray(truth.GetCenter()))
    fixed_w, fixed_grid = _working(fixed)
    t1_w, t1_grid = _working(moving_t1)
    t2_w, t2_grid = _working(moving_t2)
    same = contrast_agreement(fixed_w, fixed_grid, t1_w, t1_grid, true)
    assert same > 0.98
    assert contrast_agreement(fixed_w, fixed_grid, t2_w, t2_grid, true) < 0.3
    identity = AffineParameters(np.eye(3), np.zeros(3))
    assert contrast_agreement(fixed_w, fixed_grid, t1_w, t1_grid, identity) < same - 0.05


def test_auto_goes_on_by_local_correlation_across_one_contrast():
    """The default similarity on the sample T1 pair: the check finds one contrast, and every result is the one that
    local correlation, asked for by name, gives."""
    pair = (SAMPLE_DATA / "fixed_t1_2mm.nii.gz", SAMPLE_DATA / "moving_t1_2mm.nii.gz")
    options = dict(method="affine", working_spacing=4.0, device="cpu")
    auto = avsm.register(*pair, **options)
    named = avsm.register(*pair, similarity="lncc", **options)
    assert auto.report["similarity"]["requested"] == "auto"
    assert auto.report["similarity"]["same_contrast"] is True
    assert auto.report["similarity"]["contrast_agreement"] >= SAME_CONTRAST_MIN
    assert auto.report["affine_similarity"] == "lncc" and named.report["similarity"] == {"used": "lncc"}
    assert np.array_equal(auto.report["affine_matrix"], named.report["affine_matrix"])
    assert "contrast_check" in auto.report["timings"]


def test_auto_turns_to_mutual_information_across_a_change_of_contrast():
    """On the T2-like copy the check finds two contrasts and the run is the one ``similarity="mi"`` gives: the same
    affine, the network methods without their networks, and progress that never goes back."""
    fixed, moving, truth = inverted_contrast_pair()
    options = dict(working_spacing=4.0, device="cpu")
    fractions = []
    auto = avsm.register(fixed, moving, method="affine", progress=lambda stage, f, message: fractions.append(f),
                         **options)
    named = avsm.register(fixed, moving, method="affine", similarity="mi", **options)
    assert auto.report["similarity"]["same_contrast"] is False
    assert auto.report["similarity"]["contrast_agreement"] < SAME_CONTRAST_MIN
    assert auto.report["affine_similarity"] == "mi"
    assert np.array_equal(auto.report["affine_matrix"], named.report["affine_matrix"])
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    fast = avsm.register(fixed, moving, preset="fast", **options)
    assert fast.report["affine_similarity"] == "mi" and fast.report["network"]["networks_used"] is False
    assert np.array_equal(fast.report["affine_matrix"], named.report["affine_matrix"])
    assert "network" in fast.report["timings"]  # the networks ran once, before the check
    point = fixed.TransformContinuousIndexToPhysicalPoint((30, 40, 30))
    assert np.linalg.norm(np.subtract(auto.transform.TransformPoint(point), truth.TransformPoint(point))) < 4.0

"""avsm.register end to end. Registrations of real volumes: exported transforms reproduce the engine's outputs in
SimpleITK, and the fixed geometry survives bit for bit. Refining the affine network's result for one pair
(``register(..., affine_refine=N)``, ``--affine-refine``): N Adam iterations of mk-LNCC at 1/4 and 1/2 of the
working grid before the deformable network, checked against a known affine (the demo fixed image resampled by
SimpleITK through a rotation, scaling and shift, so the true fixed -> moving map is that transform's inverse).

Fast settings (coarse working grid, few iterations) keep each registration to seconds; accuracy is the
benchmarks' business, not these tests'.
"""
import dataclasses
import json

import numpy as np
import pytest
import SimpleITK as sitk

import avsm
from avsm import AVSMError, register
from avsm.methods import METHODS
from avsm.optimisation import VSVFSettings

from engine_fixtures import SAMPLE_DATA, inverted_contrast_pair, load_script, shared_path

FAST_AFFINE = dict(affine_iterations=20, working_spacing=4.0, device="cpu")
FAST = dict(FAST_AFFINE, vsvf_iterations=8)  # vsvf-opt
OUTPUT_IMAGES = ("warped.nii.gz", "jacobian.nii.gz", "folds.nii.gz")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("demo") / "out"
    result = avsm.register(SAMPLE_DATA / "fixed_t1_2mm.nii.gz", SAMPLE_DATA / "moving_t1_2mm.nii.gz", method="vsvf-opt",
                           moving_labels=SAMPLE_DATA / "moving_brainmask_2mm.nii.gz",
                           fixed_labels=SAMPLE_DATA / "fixed_brainmask_2mm.nii.gz", **FAST)
    result.save(outdir)
    return result, outdir


def _brain_mask(fixed: sitk.Image) -> np.ndarray:
    array = sitk.GetArrayViewFromImage(fixed)
    return array > 0.02 * array.max()


def _assert_simpleitk_resample_reproduces_warped(fixed, moving, transform, warped):
    resampled = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    ours = sitk.GetArrayFromImage(warped)
    moving_range = float(np.ptp(sitk.GetArrayViewFromImage(moving)))
    inside = _brain_mask(fixed)
    mad = float(np.abs(resampled - ours)[inside].mean())
    assert mad < 0.01 * moving_range, f"mean |SimpleITK - engine| = {mad:.4g}, range {moving_range:.4g}"
    return mad / moving_range


def _assert_fixed_geometry(fixed: sitk.Image, outdir, result=None):
    """In memory: every output image has the fixed geometry exactly. On disk: exactly what NIfTI stores for
    the fixed image itself (the format keeps the direction in float32, so we compare with the fixed image
    written and read back by the same writer)."""
    if result is not None:
        for image in (result.warped, result.det_jacobian, result.folds):
            assert (image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()) == \
                (fixed.GetSize(), fixed.GetSpacing(), fixed.GetOrigin(), fixed.GetDirection())
    sitk.WriteImage(fixed, str(outdir.parent / "fixed_roundtrip.nii.gz"))
    fixed = sitk.ReadImage(str(outdir.parent / "fixed_roundtrip.nii.gz"))
    for name in OUTPUT_IMAGES + (("warped_labels.nii.gz",) if (outdir / "warped_labels.nii.gz").exists() else ()):
        image = sitk.ReadImage(str(outdir / name))
        assert image.GetSize() == fixed.GetSize(), name
        assert image.GetSpacing() == fixed.GetSpacing(), name
        assert image.GetOrigin() == fixed.GetOrigin(), name
        assert image.GetDirection() == fixed.GetDirection(), name


def test_every_output_file_and_report_field_is_written(demo_run):
    result, outdir = demo_run
    expected = {"warped.nii.gz", "transform.h5", "affine.tfm", "inverse.h5", "jacobian.nii.gz", "folds.nii.gz",
                "warped_labels.nii.gz", "grid.png", "report.json"}
    assert expected == {p.name for p in outdir.iterdir()}
    report = json.loads((outdir / "report.json").read_text())
    for field in ("method", "model", "model_sha256", "device", "timings", "fold_count", "fold_fraction",
                  "det_jacobian_min", "det_jacobian_max", "dice_mean", "dice_per_label", "affine_matrix", "version"):
        assert field in report, field
    assert report["method"] == "vsvf-opt" and report["device"] == "cpu"
    assert set(report["dice_per_label"]) == {"1"} and report["dice_mean"] > 0.8
    assert sitk.ReadImage(str(outdir / "jacobian.nii.gz")).GetPixelID() == sitk.sitkFloat32
    assert sitk.ReadImage(str(outdir / "folds.nii.gz")).GetPixelID() == sitk.sitkUInt8


def test_simpleitk_resample_with_transform_h5_reproduces_warped(demo_run):
    result, outdir = demo_run
    fixed = sitk.ReadImage(str(SAMPLE_DATA / "fixed_t1_2mm.nii.gz"))
    moving = sitk.ReadImage(str(SAMPLE_DATA / "moving_t1_2mm.nii.gz"))
    transform = sitk.ReadTransform(str(outdir / "transform.h5"))
    _assert_simpleitk_resample_reproduces_warped(fixed, moving, transform, sitk.ReadImage(str(outdir / "warped.nii.gz")))


def test_inverse_after_forward_is_the_identity_within_half_a_voxel(demo_run):
    result, outdir = demo_run
    fixed = sitk.ReadImage(str(SAMPLE_DATA / "fixed_t1_2mm.nii.gz"))
    forward = sitk.ReadTransform(str(outdir / "transform.h5"))
    inverse = sitk.ReadTransform(str(outdir / "inverse.h5"))
    indices = np.argwhere(_brain_mask(fixed))[::50]
    errors = []
    for z, y, x in indices:
        point = fixed.TransformIndexToPhysicalPoint((int(x), int(y), int(z)))
        back = inverse.TransformPoint(forward.TransformPoint(point))
        errors.append(np.linalg.norm(np.subtract(back, point)))
    assert np.mean(errors) < 0.5 * min(fixed.GetSpacing())


def test_fixed_geometry_is_kept_bit_for_bit(demo_run):
    result, outdir = demo_run
    _assert_fixed_geometry(sitk.ReadImage(str(SAMPLE_DATA / "fixed_t1_2mm.nii.gz")), outdir, result)


def test_affine_tfm_alone_reproduces_the_affine_only_result(tmp_path):
    result = avsm.register(SAMPLE_DATA / "fixed_t1_2mm.nii.gz", SAMPLE_DATA / "moving_t1_2mm.nii.gz", method="affine", **FAST_AFFINE)
    result.save(tmp_path / "out")
    fixed = sitk.ReadImage(str(SAMPLE_DATA / "fixed_t1_2mm.nii.gz"))
    moving = sitk.ReadImage(str(SAMPLE_DATA / "moving_t1_2mm.nii.gz"))
    affine = sitk.ReadTransform(str(tmp_path / "out" / "affine.tfm"))
    _assert_simpleitk_resample_reproduces_warped(fixed, moving, affine, sitk.ReadImage(str(tmp_path / "out" / "warped.nii.gz")))
    det = sitk.GetArrayViewFromImage(result.det_jacobian)
    matrix = np.array(result.report["affine_matrix"])[:3, :3]
    np.testing.assert_allclose(det, np.linalg.det(matrix), rtol=1e-4)


@pytest.mark.parametrize("fixed_name, moving_name", [
    ("open_ms_lesjak/longitudinal_raw/patient12/study1_T1W.nii.gz", "open_ms_lesjak/longitudinal_raw/patient12/study2_FLAIR.nii.gz"),
    ("ixi002/hd_bet_IXI002-Guys-0828-T1.nii.gz", "ixi002/hd_bet_IXI002-Guys-0828-T2.nii.gz"),
])
def test_oblique_anisotropic_real_pairs_register_and_keep_the_fixed_geometry(tmp_path, fixed_name, moving_name):
    fixed_path, moving_path = shared_path(fixed_name), shared_path(moving_name)
    result = avsm.register(fixed_path, moving_path, method="vsvf-opt", **FAST)
    result.save(tmp_path / "out")
    fixed = sitk.ReadImage(str(fixed_path))
    _assert_fixed_geometry(fixed, tmp_path / "out", result)
    moving = sitk.ReadImage(str(moving_path))
    _assert_simpleitk_resample_reproduces_warped(fixed, moving, sitk.ReadTransform(str(tmp_path / "out" / "transform.h5")),
                                                 sitk.ReadImage(str(tmp_path / "out" / "warped.nii.gz")))
    assert result.report["fold_fraction"] < 1e-4


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
    network = register(fixed, moving, method="avsm", network_vsvf_steps=0, affine_refine=0, device="cpu")
    refined = register(fixed, moving, method="avsm", network_vsvf_steps=0, affine_refine=30, device="cpu")
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
    with pytest.raises(AVSMError, match=rf"option affine_refine \(--affine-refine\) does not apply to method '{method}'"):
        register(fixed, moving, method=method, affine_refine=10, device="cpu")


def test_a_negative_refinement_count_is_refused(known_affine_pair):
    fixed, moving, _ = known_affine_pair
    with pytest.raises(AVSMError, match="affine_refine must be >= 0"):
        register(fixed, moving, method="voxelmorph", affine_refine=-1, device="cpu")


def test_across_contrasts_the_network_methods_run_the_affine_optimisation_in_place_of_the_networks():
    """With mutual information the bundled networks are not run: ``fast`` finds the same affine
    as the affine method on the same grid, ``default`` optimises its vSVF step from that affine; a network option
    given explicitly runs the networks."""
    fixed, moving, truth = inverted_contrast_pair()
    options = dict(similarity="mi", working_spacing=4.0, device="cpu")
    affine = register(fixed, moving, method="affine", **options)
    avsm.inference._LOADED.clear()
    fast = register(fixed, moving, preset="fast", **options)
    assert not avsm.inference._LOADED  # the networks' weights were not even loaded
    assert fast.report["network"] == {"networks_used": False, "instance_opt": 0}
    assert fast.report["affine_working_spacing_mm"] == 4.0
    assert fast.report["model"] is None and "network" not in fast.report["timings"]
    assert np.array_equal(fast.report["affine_matrix"], affine.report["affine_matrix"])
    default = register(fixed, moving, preset="default", instance_opt=5, **options)
    assert default.report["network"]["networks_used"] is False
    assert np.array_equal(default.report["affine_matrix"], affine.report["affine_matrix"])
    assert default.report["network"]["instance_opt"] == 5 and "instance_opt_kept" in default.report["network"]
    chosen = register(fixed, moving, preset="fast", network_vsvf_steps=1, **options)
    assert chosen.report["network"]["networks_used"] is True and chosen.report["model"] is not None
    assert avsm.inference._LOADED
    own_grid = register(fixed, moving, preset="fast", similarity="mi", device="cpu", affine_refine=None)
    assert own_grid.report["working_spacing_mm"] != METHODS["affine"].working_spacing_mm  # the networks' grid
    assert own_grid.report["affine_working_spacing_mm"] == METHODS["affine"].working_spacing_mm


def test_the_working_grid_is_no_finer_than_the_images_unless_asked():
    """vsvf-opt works at 1.5 mm by default; on the 2 mm sample pair a finer grid would hold nothing more."""
    pair = (SAMPLE_DATA / "fixed_t1_2mm.nii.gz", SAMPLE_DATA / "moving_t1_2mm.nii.gz")
    quick = dict(method="vsvf-opt", affine_iterations=1, vsvf_iterations=1, device="cpu")
    assert METHODS["vsvf-opt"].working_spacing_mm < 2.0
    assert register(*pair, **quick).report["working_spacing_mm"] == 2.0
    assert register(*pair, working_spacing=1.5, **quick).report["working_spacing_mm"] == 1.5


def test_a_refinement_step_is_composed_after_the_first():
    """``VSVFSettings.refinement``: with no iterations the second step is the identity and the result is the first
    step's to rounding; with iterations it starts from the first step's match and improves it."""
    pair = (SAMPLE_DATA / "fixed_t1_2mm.nii.gz", SAMPLE_DATA / "moving_t1_2mm.nii.gz")
    options = dict(method="vsvf-opt", affine_iterations=20, working_spacing=4.0, device="cpu")
    first = VSVFSettings(iterations=8, sigma_fractions=(0.02, 0.04, 0.06, 0.08, 0.1))
    one = register(*pair, vsvf_settings=first, **options)
    idle = register(*pair, vsvf_settings=dataclasses.replace(first, refinement=VSVFSettings(iterations=0)), **options)
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(idle.warped), sitk.GetArrayViewFromImage(one.warped),
                               atol=1e-4 * float(np.ptp(sitk.GetArrayViewFromImage(one.warped))))
    steps = idle.report["vsvf"]["steps"]
    assert [step["iterations"] for step in steps] == [8, 0]
    second = VSVFSettings(iterations=8, sigma_fractions=(0.01, 0.02, 0.03, 0.04, 0.05), fold_penalty=1e4)
    two = register(*pair, vsvf_settings=dataclasses.replace(first, refinement=second), **options)
    steps = two.report["vsvf"]["steps"]
    assert [step["iterations"] for step in steps] == [8, 8]
    assert steps[1]["final_similarity_loss"] < steps[0]["final_similarity_loss"]
    assert two.report["vsvf"]["final_similarity_loss"] == steps[1]["final_similarity_loss"]
    assert two.report["fold_count"] == 0


@pytest.mark.parametrize("similarity, given_start, tried", [("mi", False, True), ("lncc", False, False),
                                                             ("mi", True, False)])
def test_mutual_information_tries_pitched_starts_from_the_centre_of_mass_only(similarity, given_start, tried):
    """The affine method tries the pitched starts beside the centre of mass with mutual information; not with local
    correlation, and not from an initial transform the user gave (progress names the start being tried)."""
    from avsm.pipeline import PITCH_STARTS_DEG

    messages = []
    options = dict(FAST_AFFINE, similarity=similarity,
                   progress=lambda stage, fraction, message: messages.append(message) if stage == "affine" else None)
    if given_start:
        options["initial_transform"] = sitk.AffineTransform(3)
    result = avsm.register(SAMPLE_DATA / "fixed_t1_2mm.nii.gz", SAMPLE_DATA / "moving_t1_2mm.nii.gz", method="affine",
                           **options)
    last = f"start {len(PITCH_STARTS_DEG) + 1}/{len(PITCH_STARTS_DEG) + 1}"
    assert any(last in message for message in messages) == tried
    assert any("start" in message for message in messages) == tried
    assert result.report["initial_source"] == ("initial transform" if given_start else "centre of mass")


def test_a_ct_slab_in_hounsfield_units_registers_to_a_moved_copy_of_itself():
    """A small body CT (-1100..1207 HU, 3 mm voxels, 30 slices, x and y axes flipped) against itself under a known
    rigid motion, air (-1024 HU) filled in (``benchmarks/tuning/ct_slab.py``): negative intensities, a thin slab and a
    flipped direction go through normalisation, the affine optimisation, the network path and the outputs. The
    affine method ends within 1 mm of the truth (3 mm voxels) and the organ labels overlap again, far above the
    centre-of-mass start; the default preset reaches the same overlap, without folds."""
    ct_slab = load_script("ct_slab", "benchmarks/tuning/ct_slab.py")
    shared_path("totalsegmentator_ct_example")
    fixed, moving, labels, moving_labels, truth = ct_slab.moved_ct()
    kwargs = dict(device="cpu", fixed_labels=labels, moving_labels=moving_labels)
    start = register(fixed, moving, method="affine", affine_iterations=0, **kwargs).report
    affine = register(fixed, moving, method="affine", **kwargs).report
    assert affine["similarity"]["used"] == "lncc" and ct_slab.affine_error_mm(affine, truth, fixed) < 1.0
    assert affine["dice_mean"] > 0.9 > start["dice_mean"] + 0.3
    default = register(fixed, moving, preset="default", **kwargs).report
    assert default["dice_mean"] > 0.9 and default["fold_count"] == 0

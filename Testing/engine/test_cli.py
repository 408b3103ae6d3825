"""The avsm command line on bad input: one clear line on stderr naming the problem, a non-zero exit, no partial
output, and the input files untouched. One test per case, through the real command line entry point."""
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from avsm.cli import main
from avsm.methods import DEFAULT_PRESET, PRESETS, methods_taking

from engine_fixtures import SAMPLE_DATA, blob_image

FIXED = SAMPLE_DATA / "fixed_t1_2mm.nii.gz"
MOVING = SAMPLE_DATA / "moving_t1_2mm.nii.gz"
FAST = ["--working-spacing", "6", "--progress", "none"]
FAST_OPTIONS = {"avsm": ["--network-affine-steps", "2", "--network-vsvf-steps", "1"],
                "vsvf-opt": ["--affine-iterations", "2", "--vsvf-iterations", "1"], "affine": ["--affine-iterations", "2"]}
"""Few steps or iterations, in the options of each method."""


def _fast(extra) -> list:
    """FAST and the fast options of the method that ``extra``'s --preset or --method runs."""
    extra = [str(a) for a in extra]
    method = extra[extra.index("--method") + 1] if "--method" in extra else None
    preset = extra[extra.index("--preset") + 1] if "--preset" in extra else None
    return FAST + FAST_OPTIONS.get(method or PRESETS[preset or DEFAULT_PRESET].method, [])


def _digest(paths):
    return {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths if Path(p).is_file()}


def _run_failing(capsys, tmp_path, fixed, moving, *extra, expect: str):
    outdir = tmp_path / "out"
    inputs = [fixed, moving] + [a for a in extra if str(a).endswith((".nii.gz", ".nrrd", ".mha"))]
    before = _digest(inputs)
    code = main(["register", str(fixed), str(moving), "-o", str(outdir), *map(str, extra), *_fast(extra)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1, err
    assert expect in err[0], err[0]
    assert err[0].startswith("avsm: error: ")
    assert not outdir.exists()
    assert not list(tmp_path.glob(".out.partial-*"))
    assert _digest(inputs) == before
    return err[0]


def _write(image, path):
    sitk.WriteImage(image, str(path))
    return path


def test_missing_file(capsys, tmp_path):
    _run_failing(capsys, tmp_path, tmp_path / "nope.nii.gz", MOVING, expect="fixed file not found")


def test_unreadable_file(capsys, tmp_path):
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"this is not a NIfTI file" * 10)
    _run_failing(capsys, tmp_path, FIXED, broken, expect="moving file cannot be read as an image")


def test_two_dimensional_image(capsys, tmp_path):
    flat = _write(sitk.GetImageFromArray(np.random.rand(30, 40).astype(np.float32)), tmp_path / "flat.nii.gz")
    _run_failing(capsys, tmp_path, flat, MOVING, expect="is 2-D")


def test_four_dimensional_image(capsys, tmp_path):
    series = _write(sitk.GetImageFromArray(np.random.rand(3, 10, 12, 14).astype(np.float32), isVector=False), tmp_path / "series.nii.gz")
    _run_failing(capsys, tmp_path, FIXED, series, expect="is 4-D")


def test_multi_component_image(capsys, tmp_path):
    rgb = _write(sitk.GetImageFromArray(np.random.rand(10, 12, 14, 3).astype(np.float32), isVector=True), tmp_path / "rgb.nrrd")
    _run_failing(capsys, tmp_path, FIXED, rgb, expect="3 components per voxel")


def test_constant_image(capsys, tmp_path):
    constant = _write(sitk.Image([20, 20, 20], sitk.sitkFloat32) + 5.0, tmp_path / "constant.mha")
    _run_failing(capsys, tmp_path, constant, MOVING, expect="is constant")


def test_nan_voxels(capsys, tmp_path):
    image = sitk.ReadImage(str(MOVING), sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(image)
    array[10, 20, 30] = np.nan
    array[11, 20, 30] = np.inf
    bad = sitk.GetImageFromArray(array)
    bad.CopyInformation(image)
    _run_failing(capsys, tmp_path, FIXED, _write(bad, tmp_path / "nan.mha"), expect="2 NaN or infinite voxels")


def test_label_map_on_a_different_grid(capsys, tmp_path):
    _run_failing(capsys, tmp_path, FIXED, MOVING, "--moving-labels", SAMPLE_DATA / "fixed_brainmask_2mm.nii.gz",
                 expect="moving labels image")
    err_line = capsys.readouterr().err
    assert err_line == ""


def test_no_overlap_left_after_centring(capsys, tmp_path):
    # moving: two blobs in opposite corners, so its centre of mass is empty; fixed: one central blob
    moving = np.zeros((40, 40, 40), np.float32)
    moving[0:9, 0:9, 0:9] = 1.0
    moving[31:40, 31:40, 31:40] = 1.0
    fixed = np.zeros((40, 40, 40), np.float32)
    fixed[15:25, 15:25, 15:25] = 1.0
    _run_failing(capsys, tmp_path, _write(sitk.GetImageFromArray(fixed), tmp_path / "f.nii.gz"),
                 _write(sitk.GetImageFromArray(moving), tmp_path / "m.nii.gz"), expect="no overlap left after centre-of-mass alignment")


def test_output_folder_not_writable(capsys, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    before = _digest([FIXED, MOVING])
    code = main(["register", str(FIXED), str(MOVING), "-o", str(blocker / "out"), *_fast([])])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "not a folder" in err[0]
    assert blocker.read_text() == "not a folder"
    assert _digest([FIXED, MOVING]) == before


def test_unknown_method(capsys, tmp_path):
    _run_failing(capsys, tmp_path, FIXED, MOVING, "--method", "demons", expect="unknown method 'demons'")


def test_unknown_model(capsys, tmp_path):
    _run_failing(capsys, tmp_path, FIXED, MOVING, "--method", "avsm", "--model", "no-such-model",
                 expect="unknown model 'no-such-model'")


def test_cuda_requested_without_a_gpu(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    _run_failing(capsys, tmp_path, FIXED, MOVING, "--device", "cuda", expect="no CUDA GPU is available")


def test_the_installed_command_exits_non_zero_with_one_line(tmp_path):
    outdir = tmp_path / "out"
    completed = subprocess.run([sys.executable, "-m", "avsm", "register", str(tmp_path / "missing.nii.gz"), str(MOVING),
                                "-o", str(outdir)], capture_output=True, text=True)
    assert completed.returncode == 2
    assert completed.stderr.strip() == f"avsm: error: fixed file not found: {tmp_path / 'missing.nii.gz'}"
    assert not outdir.exists()


@pytest.mark.parametrize("choice, option, expect", [
    (("--method", "vsvf-opt"), ("--affine-refine", "10"), "option affine_refine (--affine-refine) does not apply "
     "to method 'vsvf-opt', which takes affine_iterations, vsvf_iterations, vsvf_settings"),
    (("--method", "affine"), ("--network-affine-steps", "3"), "option network_affine_steps (--network-affine-steps) "
     "does not apply to method 'affine', which takes affine_iterations"),
    (("--preset", "accurate"), ("--network-vsvf-steps", "2"), "option network_vsvf_steps (--network-vsvf-steps) "
     "does not apply to method 'vsvf-opt'"),  # the preset's method decides
])
def test_an_option_the_method_does_not_take_is_refused_in_one_line(capsys, tmp_path, choice, option, expect):
    _run_failing(capsys, tmp_path, FIXED, MOVING, *choice, *option, expect=expect)


def test_negative_affine_refinement(capsys, tmp_path):
    _run_failing(capsys, tmp_path, FIXED, MOVING, "--method", "avsm", "--affine-refine", "-3",
                 expect="affine_refine must be >= 0 (got -3)")


def test_batch_refuses_affine_refinement_without_a_network_before_any_pair(capsys, tmp_path):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"fixed,moving\n{FIXED},{MOVING}\n")
    code = main(["batch", str(pairs), "-o", str(tmp_path / "out"), "--method", "affine", "--affine-refine", "5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "option affine_refine (--affine-refine) does not apply to method 'affine'" in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("spacing", ["0", "-2"])
def test_working_spacing_that_is_not_positive(capsys, tmp_path, spacing):
    outdir = tmp_path / "out"
    code = main(["register", str(FIXED), str(MOVING), "-o", str(outdir), "--method", "affine",
                 "--working-spacing", spacing, "--progress", "none"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and err == [f"avsm: error: working spacing must be positive (got {float(spacing)})"]
    assert not outdir.exists()


def test_missing_initial_transform_and_empty_mask_fail_in_one_line(capsys, tmp_path):
    fixed, moving = SAMPLE_DATA / "fixed_t1_2mm.nii.gz", SAMPLE_DATA / "moving_t1_2mm.nii.gz"
    _run_failing(capsys, tmp_path, fixed, moving, "--method", "affine", "--initial-transform", tmp_path / "none.tfm",
                 expect="initial transform '")
    image = sitk.ReadImage(str(fixed))
    empty = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(image)
    _write(empty, tmp_path / "empty_mask.nii.gz")
    _run_failing(capsys, tmp_path, fixed, moving, "--method", "affine", "--fixed-mask", tmp_path / "empty_mask.nii.gz",
                 expect="is empty")


def _actions(parser) -> dict:
    return {flag: action for action in parser._actions for flag in action.option_strings}


@pytest.mark.parametrize("command", ["register", "batch", "demo"])
def test_the_help_of_each_method_option_is_its_declaration(command):
    """One definition of each fact: the flag, its type and its help come from avsm.methods."""
    from avsm.cli import build_parser
    from avsm.methods import OPTIONS, option_help

    subcommand = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    actions = _actions(subcommand)
    for option in OPTIONS.values():
        if not option.command_line:
            assert option.flag is None
            continue
        action = actions[option.flag]
        assert action.dest == option.name and action.type is option.type and action.default is None
        assert action.help == option_help(option)
        assert option.description in action.help and ", ".join(methods_taking(option.name)) in action.help
    assert not {"--affine-steps", "--vsvf-steps"} & set(actions)  # the names whose meaning depended on the method

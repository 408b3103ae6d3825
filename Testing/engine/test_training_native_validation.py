"""``train.validation_native``: the trainer registers its real validation pairs at their own resolution with
``avsm.register`` and the current weights, logs that Dice beside the working-grid one, and only reads the files."""
from __future__ import annotations

import pytest

from avsm import register
from avsm.training import train
from test_training import _digests, tiny_config


def _native_config(tmp_path, method="avsm", affine_epochs=1, deformable_epochs=0, multi_epochs=1):
    path = tiny_config(tmp_path, method=method, affine_epochs=affine_epochs, deformable_epochs=deformable_epochs,
                       multi_epochs=multi_epochs, extra="validation_native = true\n")
    path.write_text(path.read_text().replace("validation_count = 1", "validation_count = 2"))
    return path


def _scalars(run_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {e.step: e.value for e in events.Scalars(tag)} if tag in events.Tags()["scalars"] else {}


def test_native_validation_is_the_register_result_of_the_current_weights(tmp_path):
    path = _native_config(tmp_path)
    data = tmp_path / "data"
    before = _digests(data / "images") | _digests(data / "labels")
    model = train(path)
    assert _digests(data / "images") | _digests(data / "labels") == before
    native = _scalars(tmp_path / "run", "validation/native_dice")
    assert sorted(native) == [2, 4]  # after the affine epoch and after the multi-step vSVF epoch
    # validation subjects: the last two of s0..s3; pair 0 registers s3 (moving) to s2 (fixed), with the training step
    # counts of the last stage (3 affine steps, 2 vSVF steps) and the final weights, which are model.pt's
    result = register(data / "images" / "s2.nii.gz", data / "images" / "s3.nii.gz", method="avsm", model=str(model),
                      moving_labels=data / "labels" / "s3.nii.gz", fixed_labels=data / "labels" / "s2.nii.gz",
                      affine_steps=3, vsvf_steps=2, device="cpu")
    assert native[4] == pytest.approx(result.report["dice_mean"], rel=1e-5)
    affine_only = register(data / "images" / "s2.nii.gz", data / "images" / "s3.nii.gz", method="avsm",
                           model=str(model), moving_labels=data / "labels" / "s3.nii.gz",
                           fixed_labels=data / "labels" / "s2.nii.gz", affine_steps=3, vsvf_steps=0, device="cpu")
    assert abs(affine_only.report["dice_mean"] - result.report["dice_mean"]) > 1e-4  # the step counts matter
    # the affine epoch scores the affine network's own result: no affine refinement, no vSVF step
    after_affine = register(data / "images" / "s2.nii.gz", data / "images" / "s3.nii.gz", method="avsm",
                            model=str(tmp_path / "run" / "checkpoints" / "step_0000002.pt"),
                            moving_labels=data / "labels" / "s3.nii.gz", fixed_labels=data / "labels" / "s2.nii.gz",
                            affine_steps=1, vsvf_steps=0, affine_refine=0, device="cpu")
    assert native[2] == pytest.approx(after_affine.report["dice_mean"], rel=1e-5)
    folds = _scalars(tmp_path / "run", "validation/native_fold_fraction")
    assert folds[4] == pytest.approx(result.report["fold_fraction"], abs=1e-12)


def test_native_validation_is_off_by_default_and_skips_voxelmorph_affine_stages(tmp_path):
    train(tiny_config(tmp_path, name="plain"))
    assert _scalars(tmp_path / "plain", "validation/native_dice") == {}
    path = _native_config(tmp_path / "vm", method="voxelmorph", affine_epochs=1, deformable_epochs=1, multi_epochs=0)
    train(path)
    assert sorted(_scalars(tmp_path / "vm" / "run", "validation/native_dice")) == [4]

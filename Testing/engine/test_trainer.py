"""The trainer: configuration errors, data errors, checkpoint integrity, exact resume, DDP on 2 CPU ranks,
the synthetic image source, training from the refined affine (``train.affine_refine``), and native validation
(``train.validation_native``: the real validation pairs registered at their own resolution with ``avsm.register``
and the current weights, logged beside the working-grid Dice; the files are only read). Tiny volumes and 2-4
steps each."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from avsm import register
from avsm.errors import AVSMError
from avsm.training import load_config, train
from avsm.training.data import training_grid
from avsm.training.synthetic import synthesise
from engine_fixtures import REPO, blob_image, load_script

CONFIGS = REPO / "benchmarks" / "training_configs"
MALF_HELD_OUT = load_script("benchmark_data", "benchmarks/benchmark_data.py").HELD_OUT


def write_dataset(root: Path, subjects: int = 4, label_maps: int = 2) -> None:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "labelmaps").mkdir()
    for i in range(subjects):
        image = blob_image(size=(22, 20, 18), spacing=(2.0, 2.0, 2.0), seed=10 + i)
        sitk.WriteImage(image, str(root / "images" / f"s{i}.nii.gz"))
        labels = sitk.Cast(sitk.BinaryThreshold(image, 0.4, 0.6, 1, 0) + 2 * sitk.BinaryThreshold(image, 0.6, 1.0, 1, 0),
                           sitk.sitkUInt8)
        sitk.WriteImage(labels, str(root / "labels" / f"s{i}.nii.gz"))
    for i in range(label_maps):
        image = blob_image(size=(30, 30, 30), spacing=(1.5, 1.5, 1.5), seed=40 + i)
        labels = sitk.Cast(1 + sitk.Cast(image * 5.0, sitk.sitkUInt8), sitk.sitkUInt8)
        sitk.WriteImage(labels, str(root / "labelmaps" / f"m{i}.nii.gz"))


TINY = """
run_dir = "{run}"
seed = 7
[data]
image_folder = "{root}/images"
label_folder = "{root}/labels"
validation_count = 1
synthetic_folder = "{root}/labelmaps"
synthetic_fraction = 0.5
working_spacing_mm = 4.0
grid_shape = [12, 12, 12]
cache_dir = "{root}/cache"
[network]
method = "{method}"
affine_width = 2
affine_hidden = 4
momentum_widths = [2, 4, 4, 4, 4]
voxelmorph_enc = [2, 4, 4, 4]
voxelmorph_dec = [4, 4, 4, 4, 4, 2, 2]
affine_steps = 2
time_steps = 4
[train]
affine_epochs = {affine_epochs}
affine_multi_epochs = 0
deformable_epochs = {deformable_epochs}
deformable_multi_epochs = {multi_epochs}
steps_per_epoch = 2
checkpoint_every = 2
learning_rate = 0.01
validation_pairs = 1
dice_weight = {dice}
"""


def tiny_config(tmp_path: Path, name: str = "run", method: str = "avsm", affine_epochs: int = 1,
                deformable_epochs: int = 0, multi_epochs: int = 1, extra: str = "", dice: Optional[float] = None) -> Path:
    if not (tmp_path / "data").exists():
        write_dataset(tmp_path / "data")
    text = TINY.format(run=tmp_path / name, root=tmp_path / "data", method=method, affine_epochs=affine_epochs,
                       deformable_epochs=deformable_epochs, multi_epochs=multi_epochs,
                       dice=dice if dice is not None else 0.5 if method == "voxelmorph" else 0.0)
    path = tmp_path / f"{name}.toml"
    path.write_text(text + extra)
    return path


def test_unknown_config_field_is_named(tmp_path):
    path = tiny_config(tmp_path)
    path.write_text(path.read_text().replace("validation_pairs = 1", "validation_pairs = 1\nlearning_rte = 0.1"))
    with pytest.raises(AVSMError, match=r"unknown config field\(s\): train.learning_rte"):
        load_config(path)


def test_mistyped_config_field_is_named(tmp_path):
    path = tiny_config(tmp_path)
    path.write_text(path.read_text().replace("steps_per_epoch = 2", 'steps_per_epoch = "2"'))
    with pytest.raises(AVSMError, match=r"config field train.steps_per_epoch: expected int, got str"):
        load_config(path)
    path.write_text(path.read_text().replace('steps_per_epoch = "2"', "steps_per_epoch = 2")
                    .replace("grid_shape = [12, 12, 12]", "grid_shape = [12, 12.5, 12]"))
    with pytest.raises(AVSMError, match=r"data.grid_shape\[1\]: expected int, got float"):
        load_config(path)


def test_empty_data_folder_is_refused_before_anything_is_written(tmp_path):
    path = tiny_config(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    path.write_text(path.read_text().replace(f'image_folder = "{tmp_path}/data/images"', f'image_folder = "{empty}"'))
    with pytest.raises(AVSMError, match="holds no images matching"):
        train(path)
    assert not (tmp_path / "run").exists() and not (tmp_path / "data" / "cache").exists()


def test_labels_that_do_not_match_their_images_are_refused(tmp_path):
    path = tiny_config(tmp_path)
    labels = sitk.ReadImage(str(tmp_path / "data" / "labels" / "s2.nii.gz"))
    labels.SetSpacing((2.0, 2.0, 2.5))
    sitk.WriteImage(labels, str(tmp_path / "data" / "labels" / "s2.nii.gz"))
    with pytest.raises(AVSMError, match=r"labels s2.nii.gz do not match image s2.nii.gz: .*spacing"):
        train(path)
    assert not (tmp_path / "run").exists()


def test_held_out_subjects_are_skipped_in_folders_and_refused_in_a_csv(tmp_path):
    path = tiny_config(tmp_path)
    for name in ("images", "labels"):
        os.rename(tmp_path / "data" / name / "s0.nii.gz", tmp_path / "data" / name / "1003_s0.nii.gz")
    from avsm.training.data import list_subjects

    config = load_config(path)
    config.data.held_out = MALF_HELD_OUT
    assert [s.name for s in list_subjects(config)] == ["s1.nii.gz", "s2.nii.gz", "s3.nii.gz"]
    table = tmp_path / "data" / "pairs.csv"
    table.write_text("image,labels\nimages/1003_s0.nii.gz,labels/1003_s0.nii.gz\nimages/s1.nii.gz,labels/s1.nii.gz\n")
    config.data.image_folder, config.data.csv = "", str(table)
    with pytest.raises(AVSMError, match=r"lists 1003_s0.nii.gz, a held-out subject \(1003\)"):
        list_subjects(config)


def test_shipped_malf_configs_hold_out_the_evaluation_subjects():
    for path in CONFIGS.glob("*.toml"):
        config = load_config(path)
        if "malf2012" in config.data.image_folder + config.data.csv:
            assert set(MALF_HELD_OUT) <= set(config.data.held_out), path.name


def _digests(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("damage", ["truncated", "flipped byte"])
def test_damaged_checkpoint_is_refused_before_any_step_and_nothing_is_overwritten(tmp_path, damage):
    path = tiny_config(tmp_path)
    train(path, stop_after=2)
    checkpoint = tmp_path / "run" / "checkpoints" / "step_0000002.pt"
    data = bytearray(checkpoint.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    checkpoint.write_bytes(bytes(data))
    before = _digests(tmp_path / "run")
    with pytest.raises(AVSMError, match="fails its checksum"):
        train(path, resume="auto")
    assert _digests(tmp_path / "run") == before


def test_existing_run_folder_is_not_overwritten_without_resume(tmp_path):
    path = tiny_config(tmp_path)
    train(path, stop_after=2)
    before = _digests(tmp_path / "run")
    with pytest.raises(AVSMError, match="already holds checkpoints; resume with --resume auto"):
        train(path)
    assert _digests(tmp_path / "run") == before


def _weights(model_path: Path) -> dict:
    return torch.load(model_path, weights_only=True)["state_dict"]


def test_resumed_training_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    """Interrupted mid-epoch (step 1) and at a stage change (step 3): the same final weights, bit for bit."""
    whole = tiny_config(tmp_path, "whole", affine_epochs=1, deformable_epochs=1, multi_epochs=0)
    pieces = tiny_config(tmp_path, "pieces", affine_epochs=1, deformable_epochs=1, multi_epochs=0)
    final = train(whole)
    train(pieces, stop_after=1)
    assert not (tmp_path / "pieces" / "model.pt").exists()
    train(pieces, resume="auto", stop_after=3)
    resumed = train(pieces, resume="auto")
    a, b = _weights(final), _weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert any(not torch.equal(a[k], torch.load(tmp_path / "whole" / "checkpoints" / "step_0000002.pt",
                                                  weights_only=True)["state_dict"][k]) for k in a)


def test_voxelmorph_with_dice_loss_trains_and_registers(tmp_path):
    path = tiny_config(tmp_path, method="voxelmorph", affine_epochs=0, deformable_epochs=1, multi_epochs=0)
    model = train(path)
    data = tmp_path / "data"
    result = register(data / "images" / "s1.nii.gz", data / "images" / "s2.nii.gz", method="voxelmorph",
                      model=str(model), moving_labels=data / "labels" / "s2.nii.gz",
                      fixed_labels=data / "labels" / "s1.nii.gz", device="cpu")
    assert result.report["model_sha256"] == (model.parent / "model.pt.sha256").read_text().split()[0]
    assert result.report["dice_mean"] > 0.2


def test_avsm_with_dice_loss_logs_it_in_every_stage(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path = tiny_config(tmp_path, affine_epochs=1, multi_epochs=1, dice=0.5)
    train(path)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    dice = events.Scalars("train/dice_loss")
    stages = {e.step: e.value for e in events.Scalars("train/stage")}
    # steps 1-2: affine (stage 0), steps 3-4: multi-step vSVF (stage 3); real pairs and synthetic ones are labelled
    assert sorted(stages[e.step] for e in dice) == [0, 0, 3, 3]
    assert all(0.0 < e.value < 1.0 for e in dice)


def test_two_rank_gloo_run_through_torchrun(tmp_path):
    path = tiny_config(tmp_path, affine_epochs=1, multi_epochs=0)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "AVSMRegistration")}
    with socket.socket() as probe:  # a free port: other test sessions may run beside this one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    completed = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                                "--master-addr", "127.0.0.1", "--master-port", str(port), "-m", "avsm.training",
                                str(path)],
                               capture_output=True, text=True, env=env, timeout=240)
    assert completed.returncode == 0, completed.stderr[-2000:]
    state = torch.load(tmp_path / "run" / "checkpoints" / "step_0000002.pt", weights_only=True)
    assert state["step"] == 2 and (tmp_path / "run" / "model.pt").is_file()


def test_synthetic_images_follow_the_label_geometry():
    torch.manual_seed(0)
    grid = training_grid(load_config(CONFIGS / "brain_cpu_avsm.toml"))
    labels = torch.zeros((1, 1, *grid.shape), dtype=torch.int16)
    d, h, w = grid.shape
    labels[..., d // 4: 3 * d // 4, h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 2
    labels[..., d // 3: 2 * d // 3, h // 3: 2 * h // 3, w // 3: 2 * w // 3] = 7
    image, moved = synthesise(labels, grid, torch.Generator().manual_seed(5))
    assert image.shape == labels.shape and 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert torch.all(image[moved == 0] == 0)  # background stays 0, like a skull-stripped scan
    overlap = 2 * ((moved > 0) & (labels > 0)).sum() / ((moved > 0).sum() + (labels > 0).sum())
    assert 0.6 < float(overlap) < 0.995  # moved by a random affine and deformation, not destroyed
    inner, outer = image[moved == 7], image[moved == 2]
    # one random intensity per label, varied only by blur, bias field, gamma and noise
    assert float(inner.std()) < 0.2 and float(outer.std()) < 0.2
    assert len({round(float(inner.median()), 3), round(float(outer.median()), 3)}) == 2


def test_avsm_train_reports_a_bad_config_in_one_line(tmp_path, capsys):
    from avsm.cli import main

    path = tiny_config(tmp_path)
    path.write_text(path.read_text().replace("[train]", "[train]\nepochs = 3"))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("avsm: error: unknown config field(s): train.epochs")
    assert not (tmp_path / "run").exists()


def test_init_weights_start_a_new_run_and_a_different_network_is_refused(tmp_path):
    from avsm.training.trainer import Trainer

    model = train(tiny_config(tmp_path, "first"))
    second = tiny_config(tmp_path, "second")
    second.write_text(f'init_weights = "{model}"\n' + second.read_text())
    trainer = Trainer(load_config(second))
    expected = _weights(model)
    for key, value in trainer.network.state_dict().items():
        assert torch.equal(value, expected[key]), key
    assert trainer.step == 0  # a new run: weights only, no optimiser state or step count
    other = tiny_config(tmp_path, "other", method="voxelmorph", multi_epochs=0)
    other.write_text(f'init_weights = "{model}"\n' + other.read_text())
    with pytest.raises(AVSMError, match="different \\[network\\] section"):
        Trainer(load_config(other))
    assert not (tmp_path / "other").exists()  # refused before anything is written
    wider = tiny_config(tmp_path, "wider")
    wider.write_text(f'init_weights = "{model}"\n' + wider.read_text().replace("momentum_widths = [2, 4, 4, 4, 4]",
                                                                                  "momentum_widths = [2, 4, 4, 4, 8]"))
    with pytest.raises(AVSMError, match="weights do not fit \\(fields that differ: momentum_widths\\)"):
        Trainer(load_config(wider))
    assert not (tmp_path / "wider").exists()


def test_init_weights_may_change_the_fields_without_weights(tmp_path):
    from avsm.training.trainer import Trainer

    model = train(tiny_config(tmp_path, "first"))
    sharper = tiny_config(tmp_path, "sharper")
    sharper.write_text(f'init_weights = "{model}"\n' + sharper.read_text().replace(
        "time_steps = 4", "time_steps = 6\nsigma_fractions = [0.03, 0.06, 0.09, 0.12, 0.15]"))
    trainer = Trainer(load_config(sharper))
    assert trainer.network.config.sigma_fractions == (0.03, 0.06, 0.09, 0.12, 0.15) and trainer.network.config.time_steps == 6
    expected = _weights(model)
    assert all(torch.equal(value, expected[key]) for key, value in trainer.network.state_dict().items())


def test_a_tiny_run_trains_from_the_refined_affine(tmp_path):
    path = tiny_config(tmp_path, affine_epochs=0, multi_epochs=0, deformable_epochs=1, extra="affine_refine = 3\n")
    assert load_config(path).train.affine_refine == 3
    model = train(path)
    assert model.exists()


def test_a_negative_refinement_count_is_refused_by_name(tmp_path):
    with pytest.raises(AVSMError, match=r"config field train.affine_refine must be >= 0 \(got -1\)"):
        load_config(tiny_config(tmp_path, extra="affine_refine = -1\n"))


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
                      network_affine_steps=3, network_vsvf_steps=2, device="cpu")
    assert native[4] == pytest.approx(result.report["dice_mean"], rel=1e-5)
    affine_only = register(data / "images" / "s2.nii.gz", data / "images" / "s3.nii.gz", method="avsm",
                           model=str(model), moving_labels=data / "labels" / "s3.nii.gz",
                           fixed_labels=data / "labels" / "s2.nii.gz", network_affine_steps=3,
                           network_vsvf_steps=0, device="cpu")
    # the step counts matter: the vSVF steps move the images (whether the deformation is then kept or not)
    scores = [r.report["network"]["check_loss_network"] for r in (affine_only, result)]
    assert abs(scores[0] - scores[1]) > 1e-4
    # the affine epoch scores the affine network's own result: no affine refinement, no vSVF step
    after_affine = register(data / "images" / "s2.nii.gz", data / "images" / "s3.nii.gz", method="avsm",
                            model=str(tmp_path / "run" / "checkpoints" / "step_0000002.pt"),
                            moving_labels=data / "labels" / "s3.nii.gz", fixed_labels=data / "labels" / "s2.nii.gz",
                            network_affine_steps=1, network_vsvf_steps=0, affine_refine=0, device="cpu")
    assert native[2] == pytest.approx(after_affine.report["dice_mean"], rel=1e-5)
    folds = _scalars(tmp_path / "run", "validation/native_fold_fraction")
    assert folds[4] == pytest.approx(result.report["fold_fraction"], abs=1e-12)


def test_native_validation_is_off_by_default_and_skips_voxelmorph_affine_stages(tmp_path):
    train(tiny_config(tmp_path, name="plain"))
    assert _scalars(tmp_path / "plain", "validation/native_dice") == {}
    path = _native_config(tmp_path / "vm", method="voxelmorph", affine_epochs=1, deformable_epochs=1, multi_epochs=0)
    train(path)
    assert sorted(_scalars(tmp_path / "vm" / "run", "validation/native_dice")) == [4]

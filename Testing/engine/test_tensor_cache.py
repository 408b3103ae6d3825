"""The tensor cache (``data.tensor_cache``): one torch file of the training volumes on the training grid, built
from a config's folders and read by the trainer without SimpleITK; bad caches are refused in one line; and the
trainer's wall-clock budget (``train.max_minutes`` / ``--max-minutes``) stops a run with a checkpoint and
model.pt."""
from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from avsm.errors import AVSMError
from avsm.training import load_config
from avsm.training import trainer as trainer_module
from avsm.training.tensor_cache import build, decode_volume, encode_volume
from engine_fixtures import REPO, load_script

SMOKE = REPO / "scripts" / "gpu_run"
CONFIGS = REPO / "benchmarks" / "training_configs"
NO_SIMPLEITK = REPO / "scripts" / "no_simpleitk"


@pytest.fixture
def smoke_cache(tmp_path) -> Path:
    """The sample pair's tensor cache and a copy of the smoke training config beside it."""
    build(load_config(SMOKE / "smoke_build.toml"), tmp_path / "smoke_cache.pt")
    (tmp_path / "smoke_train.toml").write_text((SMOKE / "smoke_train.toml").read_text())
    return tmp_path


def test_images_are_stored_to_within_half_a_step_of_255_and_labels_exactly():
    image = torch.rand(1, 1, 6, 7, 8)
    labels = torch.randint(0, 208, (1, 1, 6, 7, 8), dtype=torch.int16)
    wide = labels * 2
    assert float((decode_volume(encode_volume(image, "image"), (6, 7, 8), "x") - image).abs().max()) <= 0.5 / 255 + 1e-7
    assert encode_volume(labels, "labels")["dtype"] == "uint8" and encode_volume(wide, "labels")["dtype"] == "int16"
    assert torch.equal(decode_volume(encode_volume(labels, "labels"), (6, 7, 8), "x"), labels)
    assert torch.equal(decode_volume(encode_volume(wide, "labels"), (6, 7, 8), "x"), wide)


def test_a_cache_built_from_the_folders_holds_what_the_trainer_preprocesses(smoke_cache):
    from avsm.training.data import list_subjects, preprocess_subject
    from avsm.training.tensor_cache import read

    config = load_config(smoke_cache / "smoke_train.toml")
    cached = read(config)
    assert [s["name"] for s in cached["subjects"]] == ["fixed_t1_2mm.nii.gz", "moving_t1_2mm.nii.gz"]
    assert [m["name"] for m in cached["label_maps"]] == ["fixed_brainmask_2mm.nii.gz", "moving_brainmask_2mm.nii.gz"]
    source = load_config(SMOKE / "smoke_build.toml")
    direct = preprocess_subject(list_subjects(source)[0], source)
    assert float((cached["subjects"][0]["image"] - direct["image"]).abs().max()) <= 0.5 / 255 + 1e-6
    assert torch.equal(cached["subjects"][0]["labels"], direct["labels"])
    assert (smoke_cache / "smoke_cache.pt").stat().st_size < 100_000


def test_training_from_a_tensor_cache_needs_no_simpleitk(smoke_cache):
    env = {"PYTHONPATH": f"{NO_SIMPLEITK}:{REPO / 'AVSMRegistration'}", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "avsm.training", str(smoke_cache / "smoke_train.toml"), "--stop-after",
                           "3"], cwd=smoke_cache, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (smoke_cache / "run" / "checkpoints" / "step_0000003.pt").is_file()
    blocked = subprocess.run([sys.executable, "-c", "import SimpleITK"], env=env, capture_output=True, text=True)
    assert blocked.returncode != 0 and "blocked" in blocked.stderr


@pytest.mark.parametrize("damage, message", [
    ("missing", "data.tensor_cache not found"),
    ("not torch", "is not a torch file"),
    ("other format", "is not an avsm tensor cache"),
    ("other grid", "was built with grid_shape = [20, 24, 20], the config says [20, 24, 24]"),
    ("held out", "holds 1003_t1.nii.gz, a held-out subject (1003)"),
])
def test_a_bad_cache_is_refused_in_one_line_before_anything_is_written(smoke_cache, damage, message):
    cache, config = smoke_cache / "smoke_cache.pt", smoke_cache / "smoke_train.toml"
    if damage == "missing":
        cache.unlink()
    elif damage == "not torch":
        cache.write_text("not a torch file")
    elif damage == "other format":
        torch.save({"weights": torch.zeros(3)}, cache)
    elif damage == "other grid":
        config.write_text(config.read_text().replace("grid_shape = [20, 24, 20]", "grid_shape = [20, 24, 24]"))
    elif damage == "held out":
        payload = torch.load(cache, weights_only=True)
        payload["subjects"][0]["name"] = "1003_t1.nii.gz"
        torch.save(payload, cache)
        config.write_text(config.read_text().replace("\n[data]\n", '\n[data]\nheld_out = ["1003"]\n'))
    result = subprocess.run([sys.executable, "-m", "avsm.training", str(config)], cwd=smoke_cache, capture_output=True,
                            text=True, env={"PYTHONPATH": str(REPO / "AVSMRegistration"), "OMP_NUM_THREADS": "1"})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
    assert not (smoke_cache / "run").exists()


@pytest.mark.parametrize("extra, message", [
    ('image_folder = "images"', "data.tensor_cache replaces data.image_folder"),
    ("", "train.validation_native registers the validation images from their files"),
])
def test_a_tensor_cache_config_with_folders_or_native_validation_is_refused(smoke_cache, extra, message):
    text = (smoke_cache / "smoke_train.toml").read_text().replace("\n[data]\n", f"\n[data]\n{extra}\n")
    if not extra:
        text = text.replace("\n[train]\n", "\n[train]\nvalidation_native = true\n")
    (smoke_cache / "bad.toml").write_text(text)
    with pytest.raises(AVSMError, match=message):
        load_config(smoke_cache / "bad.toml")


def test_the_time_budget_stops_training_with_a_checkpoint_and_the_model(smoke_cache, monkeypatch):
    clock = iter(range(0, 10_000, 30))  # every reading of the trainer's clock is 30 s after the last
    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(monotonic=lambda: next(clock),
                                                                      perf_counter=lambda: 0.0))
    config = load_config(smoke_cache / "smoke_train.toml")
    trainer = trainer_module.Trainer(config)
    model = trainer.run(max_minutes=1.5)  # readings 0 (start), 30, 60 before steps 1 and 2, 90 before step 3: stop
    assert trainer.step == 2 < trainer.steps_total
    assert model.is_file() and (smoke_cache / "run" / "checkpoints" / "step_0000002.pt").is_file()
    saved = torch.load(model, weights_only=True)["state_dict"]
    assert all(torch.equal(saved[name], value) for name, value in trainer.network.state_dict().items())


def test_a_negative_budget_is_refused_by_name(smoke_cache, capsys):
    from avsm.cli import main

    assert main(["train", str(smoke_cache / "smoke_train.toml"), "--max-minutes", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "avsm: error: --max-minutes must be >= 0 (got -1.0)"
    text = (smoke_cache / "smoke_train.toml").read_text().replace("max_minutes = 1.0", "max_minutes = -2.0")
    (smoke_cache / "bad.toml").write_text(text)
    with pytest.raises(AVSMError, match=r"train.max_minutes must be >= 0 \(got -2.0\)"):
        load_config(smoke_cache / "bad.toml")


def test_the_gpu_visit_config_is_the_gpu_config_reading_the_tensor_cache():
    visit = load_config(CONFIGS / "brain_gpu_avsm_2mm_tensor_cache.toml")
    source = load_config(CONFIGS / "brain_gpu_avsm_2mm.toml")
    held_out = load_script("benchmark_data", "benchmarks/benchmark_data.py").HELD_OUT
    assert visit.network == source.network
    assert set(held_out) <= set(visit.data.held_out) == set(source.data.held_out)
    for name in ("validation_count", "synthetic_fraction", "synthetic_brain_only", "working_spacing_mm", "grid_shape"):
        assert getattr(visit.data, name) == getattr(source.data, name), name
    differing = {k for k, v in visit.to_dict()["train"].items() if source.to_dict()["train"][k] != v}
    assert differing == {"validation_native", "max_minutes"} and 0 < visit.train.max_minutes <= 8
    assert visit.path(visit.data.tensor_cache) == REPO / ".gpu_cache" / "brain_2mm.pt"

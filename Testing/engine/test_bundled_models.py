"""The shipped models (package data in avsm/bundled_models) and the bundler that writes them.

Every manifest record must point at a small weights-only file whose sha256 matches, that loads with
``weights_only=True`` into the network its config describes, and whose card names its training data
without the held-out malf2012 subjects. The bundled AVSM model must register the bundled demo pair.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from avsm import AVSMError
from avsm.bundle import MAX_BUNDLED_BYTES, bundle_model
from avsm.checkpoints import bundled_models, models_dir, read_manifest, sha256_of
from avsm.networks import NetworkConfig, build_network

from engine_fixtures import SAMPLE_DATA

MODELS = Path(__file__).resolve().parents[2] / "AVSMRegistration" / "avsm" / "bundled_models"
HELD_OUT = re.compile(r"\b100[0-9]\b")


def _records() -> list[dict]:
    return json.loads((MODELS / "manifest.json").read_text())["models"]


def test_manifest_lists_an_avsm_and_a_voxelmorph_model():
    methods = {record["method"] for record in _records()}
    assert {"avsm", "voxelmorph"} <= methods


@pytest.mark.parametrize("record", _records() if (MODELS / "manifest.json").exists() else [], ids=lambda r: r["name"])
def test_each_bundled_model_is_small_checked_and_loads_weights_only(record):
    path = MODELS / record["file"]
    assert path.stat().st_size < MAX_BUNDLED_BYTES
    assert sha256_of(path) == record["sha256"]
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert set(payload) <= {"config", "state_dict", "working_spacing_mm", "version"}  # no optimiser / RNG state
    config = NetworkConfig.from_dict(payload["config"])
    assert config.method == record["method"]
    build_network(config).load_state_dict(payload["state_dict"])
    assert payload["working_spacing_mm"] == record["working_spacing_mm"]
    assert record.get("inference_spacing_mm", 1.0) > 0
    assert sum(t.numel() for t in payload["state_dict"].values()) == record["parameters"]
    # the card names its data and never the held-out evaluation subjects as training data
    assert "malf2012" in record["training_data"] and not HELD_OUT.search(record["training_data"])
    assert record["accuracy"], "measured accuracy belongs in the manifest"


def test_model_card_describes_every_bundled_model():
    card = (MODELS / "MODEL_CARD.md").read_text()
    for record in _records():
        assert record["name"] in card and record["sha256"][:12] in card


def test_bundled_avsm_model_registers_the_demo_pair(tmp_path):
    from avsm import register
    from avsm.methods import PRESETS

    fixed, moving = SAMPLE_DATA / "fixed_t1_2mm.nii.gz", SAMPLE_DATA / "moving_t1_2mm.nii.gz"
    labels = dict(moving_labels=SAMPLE_DATA / "moving_brainmask_2mm.nii.gz",
                  fixed_labels=SAMPLE_DATA / "fixed_brainmask_2mm.nii.gz")
    network = register(fixed, moving, method="avsm", device="cpu", **labels).report
    record = next(r for r in _records() if r["method"] == "avsm")
    assert network["model"] == record["name"]
    # the model runs on its manifest's test-time grid unless told otherwise
    assert network["working_spacing_mm"] == record.get("inference_spacing_mm", record["working_spacing_mm"])
    assert network["network"]["working_spacing_mm"] == record["working_spacing_mm"]
    assert network["fold_fraction"] == 0
    centred = register(fixed, moving, method="affine", affine_iterations=0, device="cpu", **labels).report
    assert network["dice_mean"] > centred["dice_mean"] + 0.01  # better than the centre-of-mass start
    refined = register(fixed, moving, preset="default", device="cpu", **labels).report
    assert refined["method"] == "avsm" and refined["preset"] == "default" and refined["fold_fraction"] == 0
    assert refined["network"]["instance_opt"] == PRESETS["default"].options["instance_opt"] > 0
    # instance optimisation runs on the network's own map grid: no second resampling of the inputs
    assert refined["network"]["instance_opt_map_grid_shape"] == network["network"]["map_grid_shape"]
    assert refined["dice_mean"] > network["dice_mean"]


# ------------------------------------------------------------------------------------------- bundler
def _training_checkpoint(path: Path) -> Path:
    config = NetworkConfig(method="avsm", affine_width=4, affine_hidden=8, momentum_widths=(4, 4, 4, 4, 4))
    network = build_network(config)
    torch.save({"config": config.to_dict(), "state_dict": network.state_dict(), "working_spacing_mm": 4.0,
                "optimiser": {"state": {}}, "step": 7, "torch_rng": torch.get_rng_state()}, path)
    return path


def test_bundler_writes_weights_only_file_and_manifest_record(tmp_path):
    checkpoint = _training_checkpoint(tmp_path / "step_0000007.pt")
    record = bundle_model(checkpoint, "tiny", "malf2012 1010-1035", {"dice": 0.5}, directory=tmp_path / "models")
    payload = torch.load(tmp_path / "models" / "tiny.pt", weights_only=True)
    assert set(payload) == {"config", "state_dict", "working_spacing_mm"}
    assert record["sha256"] == sha256_of(tmp_path / "models" / "tiny.pt")
    assert read_manifest(tmp_path / "models")["models"] == [record]
    # re-bundling under the same name replaces the record, never duplicates it
    bundle_model(checkpoint, "tiny", "malf2012 1010-1035", {"dice": 0.6}, directory=tmp_path / "models")
    records = read_manifest(tmp_path / "models")["models"]
    assert len(records) == 1 and records[0]["accuracy"] == {"dice": 0.6}


def test_bundled_record_is_found_by_name(tmp_path, monkeypatch):
    checkpoint = _training_checkpoint(tmp_path / "ckpt.pt")
    bundle_model(checkpoint, "tiny", "malf2012 1010-1035", directory=tmp_path / "models")
    monkeypatch.setenv("AVSM_MODELS_DIR", str(tmp_path / "models"))
    assert models_dir() == tmp_path / "models"
    assert [entry.name for entry in bundled_models()] == ["tiny"]


def test_bundler_refuses_a_file_that_is_not_a_checkpoint_and_keeps_the_manifest(tmp_path):
    models = tmp_path / "models"
    bundle_model(_training_checkpoint(tmp_path / "ckpt.pt"), "tiny", "malf2012", directory=models)
    before = (models / "manifest.json").read_bytes()
    bad = tmp_path / "bad.pt"
    torch.save({"weights": torch.zeros(3)}, bad)
    with pytest.raises(AVSMError, match="not an avsm checkpoint"):
        bundle_model(bad, "other", "malf2012", directory=models)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((tmp_path / "ckpt.pt").read_bytes()[:200])
    with pytest.raises(AVSMError, match="cannot be loaded"):
        bundle_model(truncated, "other", "malf2012", directory=models)
    assert (models / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in models.iterdir()) == ["manifest.json", "tiny.pt"]


def test_inference_spacing_of_the_manifest_sets_the_default_working_grid(tmp_path, monkeypatch):
    """A bundled record's ``inference_spacing_mm`` is the test-time grid by default; an explicit
    ``working_spacing`` wins; the same checkpoint given by path runs on its training grid."""
    from avsm import register

    checkpoint = _training_checkpoint(tmp_path / "ckpt.pt")  # trained at 4 mm
    record = bundle_model(checkpoint, "tiny", "malf2012 1010-1035", directory=tmp_path / "models",
                          inference_spacing=6.0)
    assert record["inference_spacing_mm"] == 6.0 and record["working_spacing_mm"] == 4.0
    monkeypatch.setenv("AVSM_MODELS_DIR", str(tmp_path / "models"))
    assert bundled_models()[0].inference_spacing_mm == 6.0
    fixed, moving = SAMPLE_DATA / "fixed_t1_2mm.nii.gz", SAMPLE_DATA / "moving_t1_2mm.nii.gz"
    fast = dict(method="avsm", device="cpu", network_affine_steps=1, network_vsvf_steps=1, affine_refine=0)
    by_name = register(fixed, moving, model="tiny", **fast)
    assert by_name.report["working_spacing_mm"] == 6.0
    assert by_name.report["network"]["working_spacing_mm"] == 4.0
    assert register(fixed, moving, model="tiny", working_spacing=8.0, **fast).report["working_spacing_mm"] == 8.0
    by_path = register(fixed, moving, model=str(checkpoint), **fast).report
    assert by_path["working_spacing_mm"] == 4.0
    coarse, fine = by_name.report["network"]["map_grid_shape"], by_path["network"]["map_grid_shape"]
    assert all(c < f for c, f in zip(coarse, fine))  # the grids really differ, not only the report


@pytest.mark.parametrize("value", [-2.5, 0, "2.5", True])
def test_a_manifest_with_a_bad_inference_spacing_is_refused_by_name(tmp_path, monkeypatch, value):
    models = tmp_path / "models"
    bundle_model(_training_checkpoint(tmp_path / "ckpt.pt"), "tiny", "malf2012", directory=models)
    manifest = read_manifest(models)
    manifest["models"][0]["inference_spacing_mm"] = value
    (models / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("AVSM_MODELS_DIR", str(models))
    with pytest.raises(AVSMError, match="inference_spacing_mm of model 'tiny' must be a positive number of mm"):
        bundled_models()


def test_bundler_refuses_a_bad_inference_spacing_and_an_oversized_file_keeping_the_old_model(tmp_path, monkeypatch):
    models = tmp_path / "models"
    checkpoint = _training_checkpoint(tmp_path / "ckpt.pt")
    bundle_model(checkpoint, "tiny", "malf2012", directory=models)
    before = {p.name: p.read_bytes() for p in models.iterdir()}
    with pytest.raises(AVSMError, match="inference spacing must be a positive number of mm"):
        bundle_model(checkpoint, "tiny", "malf2012", directory=models, inference_spacing=0.0)
    monkeypatch.setattr("avsm.bundle.MAX_BUNDLED_BYTES", 1024)
    with pytest.raises(AVSMError, match="over the 0 MiB limit"):
        bundle_model(checkpoint, "tiny", "malf2012", directory=models)
    assert {p.name: p.read_bytes() for p in models.iterdir()} == before  # same files, same bytes, no temporaries

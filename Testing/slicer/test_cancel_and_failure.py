"""A cancelled or failing run of the real engine leaves the scene exactly as it was, no files behind,
and a failure shows the engine's own message."""
from __future__ import annotations

import hashlib
import json
import os
import time

import pytest

import avsm
from AVSMRegistrationLib import (RegistrationCancelled, RegistrationFailed, RegistrationInputError, RegistrationJob,
                                 RegistrationOptions, register_volumes)
from slicer_test_support import FAST_AFFINE_ONLY, scene_state


def wait_for_stage(job: RegistrationJob, stage: str, timeout: float = 90.0) -> list:
    """Poll the background engine until it reports `stage` (it is then computing, not starting up)."""
    events, deadline = [], time.monotonic() + timeout
    while not any(event[0] == stage for event in events) and time.monotonic() < deadline:
        assert job.poll(progress=lambda *event: events.append(event)) is False, "the engine stopped early"
        time.sleep(0.05)
    assert any(event[0] == stage for event in events), f"the engine never reached '{stage}': {events}"
    return events


def test_cancel_stops_the_engine_within_two_seconds(scene, nodes, tmp_path):
    before = scene_state(scene)
    options = RegistrationOptions(method="vsvf-opt", device="cpu", affine_iterations=5, vsvf_iterations=500,
                                  working_spacing=4.0)
    job = RegistrationJob(nodes["fixed"], nodes["moving"], nodes["movingLabels"], nodes["fixedLabels"], options,
                          tempRoot=tmp_path)
    job.start()
    events = wait_for_stage(job, "vsvf")  # 500 vSVF iterations ahead: minutes of work
    assert events[0][1] == 0.0 and events[-1][1] < 1.0

    started = time.monotonic()
    job.cancel()
    assert time.monotonic() - started < 2.0
    assert job.process.process.poll() is not None  # the engine process is gone
    assert not job.running
    with pytest.raises(RegistrationCancelled):
        job.finish()
    assert scene_state(scene) == before
    assert os.listdir(tmp_path) == []


@pytest.fixture
def corrupted_model(tmp_path_factory, monkeypatch):
    """A models folder whose manifest lists 'bad' (an avsm model) with a sha256 its file does not have."""
    folder = tmp_path_factory.mktemp("models")
    (folder / "bad.pt").write_bytes(b"not the weights the manifest promises")
    manifest = {"models": [{"name": "bad", "method": "avsm", "file": "bad.pt", "sha256": "0" * 64,
                            "working_spacing_mm": 4.0}]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert hashlib.sha256((folder / "bad.pt").read_bytes()).hexdigest() != "0" * 64
    monkeypatch.setenv("AVSM_MODELS_DIR", str(folder))  # read by the engine, here and in the background process
    return "bad"


def engine_message(fixed_node, moving_node, **kwargs) -> str:
    """What the engine itself says about these inputs (called directly, outside the bridge)."""
    from AVSMRegistrationLib.geometry import image_from_volume
    import SimpleITK as sitk

    with pytest.raises(avsm.AVSMError) as error:
        avsm.register(image_from_volume(fixed_node, sitk.sitkFloat32), image_from_volume(moving_node, sitk.sitkFloat32),
                      **kwargs)
    return str(error.value)


def test_model_failing_its_checksum_stops_the_background_run(scene, nodes, tmp_path, corrupted_model):
    expected = engine_message(nodes["fixed"], nodes["moving"], method="avsm", model=corrupted_model, device="cpu")
    before = scene_state(scene)
    with pytest.raises(RegistrationFailed) as failure:
        register_volumes(nodes["fixed"], nodes["moving"], method="avsm", model=corrupted_model, device="cpu",
                         background=True, tempRoot=tmp_path)
    assert str(failure.value) == f"avsm: error: {expected}"  # the engine's one line on stderr, as it is
    assert scene_state(scene) == before
    assert os.listdir(tmp_path) == []
    assert "fails its checksum" in expected and "bad.pt" in expected


def test_model_failing_its_checksum_in_process(scene, nodes, tmp_path, corrupted_model):
    expected = engine_message(nodes["fixed"], nodes["moving"], method="avsm", model=corrupted_model, device="cpu")
    before = scene_state(scene)
    with pytest.raises(RegistrationInputError) as failure:
        register_volumes(nodes["fixed"], nodes["moving"], method="avsm", model=corrupted_model, device="cpu",
                         tempRoot=tmp_path)
    assert str(failure.value) == expected and "fails its checksum" in expected
    assert scene_state(scene) == before
    assert os.listdir(tmp_path) == []


def test_engine_refusal_in_the_background_keeps_the_engine_message(scene, nodes, tmp_path):
    """A request the bridge passes on but the engine refuses: a model name that is not bundled."""
    expected = engine_message(nodes["fixed"], nodes["moving"], method="avsm", model="avsm-brain", device="cpu")
    assert "unknown model 'avsm-brain'" in expected
    before = scene_state(scene)
    with pytest.raises(RegistrationFailed) as failure:
        register_volumes(nodes["fixed"], nodes["moving"], method="avsm", model="avsm-brain", device="cpu",
                         background=True, tempRoot=tmp_path)
    assert str(failure.value) == f"avsm: error: {expected}"
    assert scene_state(scene) == before
    assert os.listdir(tmp_path) == []


def test_engine_refusal_in_process_is_an_input_error(scene, nodes, tmp_path):
    before = scene_state(scene)
    with pytest.raises(RegistrationInputError, match="unknown model 'avsm-brain'"):
        register_volumes(nodes["fixed"], nodes["moving"], method="avsm", model="avsm-brain", device="cpu",
                         tempRoot=tmp_path)
    assert scene_state(scene) == before
    assert os.listdir(tmp_path) == []


def test_import_error_after_the_engine_rolls_the_scene_back(scene, known_nodes, tmp_path, monkeypatch):
    import AVSMRegistrationLib.outputs as outputs

    def broken(*args, **kwargs):
        raise RuntimeError("colour table exploded")

    monkeypatch.setattr(outputs, "show_folds", broken)  # the very last step of building the outputs
    before = scene_state(scene)
    with pytest.raises(RuntimeError, match="colour table exploded"):
        register_volumes(known_nodes["fixed"], known_nodes["moving"], method="affine", device="cpu",
                         movingLabels=known_nodes["movingLabels"], tempRoot=tmp_path, **FAST_AFFINE_ONLY)
    assert [entry[:2] for entry in scene_state(scene)] == [entry[:2] for entry in before]
    assert os.listdir(tmp_path) == []

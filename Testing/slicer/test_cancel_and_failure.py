"""A cancelled or failing background run leaves the scene exactly as it was, and no files behind."""
from __future__ import annotations

import os
import time

import pytest

from AVSMRegistrationLib import RegistrationCancelled, RegistrationFailed, RegistrationJob, RegistrationOptions
from AVSMRegistrationLib import register_volumes
from slicer_test_support import scene_state


def wait_for_first_event(job: RegistrationJob, timeout: float = 20.0) -> list:
    events, deadline = [], time.monotonic() + timeout
    while not events and time.monotonic() < deadline:
        job.poll(progress=lambda *event: events.append(event))
        time.sleep(0.05)
    assert events, "the engine never reported progress"
    return events


def test_cancel_stops_the_engine_within_two_seconds(scene, nodes, fake_launcher, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_AVSM_SLEEP", "60")
    before = scene_state(scene)
    job = RegistrationJob(nodes["fixed"], nodes["moving"], nodes["movingLabels"], nodes["fixedLabels"],
                          RegistrationOptions(method="vsvf-opt"), tempRoot=tmp_path, launcher=fake_launcher)
    job.start()
    events = wait_for_first_event(job)
    assert events[0][0] == "start" and "device: cpu" in events[0][2]

    started = time.monotonic()
    job.cancel()
    assert time.monotonic() - started < 2.0
    assert job.process.process.poll() is not None  # the engine process is gone
    with pytest.raises(RegistrationCancelled):
        job.finish()
    assert scene_state(scene) == before
    assert os.listdir(tmp_path) == []


def test_failing_engine_reports_its_message_and_creates_nothing(scene, nodes, fake_launcher, tmp_path, monkeypatch):
    message = "error: model file 'avsm_brain.pt' failed its sha256 check (expected 1234abcd, got 9f00aa11)"
    monkeypatch.setenv("FAKE_AVSM_FAIL", message)
    before = scene_state(scene)
    with pytest.raises(RegistrationFailed) as failure:
        register_volumes(nodes["fixed"], nodes["moving"], method="vsvf-opt", background=True,
                         launcher=fake_launcher, tempRoot=tmp_path)
    assert str(failure.value) == message
    assert scene_state(scene) == before
    assert os.listdir(tmp_path) == []


def test_engine_error_exit_keeps_the_engine_message(scene, nodes, fake_launcher, tmp_path):
    before = scene_state(scene)
    with pytest.raises(RegistrationFailed, match="unknown method 'voxelmorph'"):
        register_volumes(nodes["fixed"], nodes["moving"], method="voxelmorph", background=True,
                         launcher=fake_launcher, tempRoot=tmp_path)
    assert scene_state(scene) == before
    assert os.listdir(tmp_path) == []


def test_import_error_after_the_engine_rolls_the_scene_back(scene, nodes, fake_launcher, tmp_path, monkeypatch):
    import AVSMRegistrationLib.outputs as outputs

    def broken(*args, **kwargs):
        raise RuntimeError("colour table exploded")

    monkeypatch.setattr(outputs, "show_folds", broken)  # the very last step of building the outputs
    before = scene_state(scene)
    with pytest.raises(RuntimeError, match="colour table exploded"):
        register_volumes(nodes["fixed"], nodes["moving"], method="vsvf-opt", background=True,
                         launcher=fake_launcher, tempRoot=tmp_path)
    assert [entry[:2] for entry in scene_state(scene)] == [entry[:2] for entry in before]
    assert os.listdir(tmp_path) == []

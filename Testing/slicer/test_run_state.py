"""The panel's run state machine (AVSMRegistrationLib.run_state) driving the real engine in a background
process, polled as the panel's timer does: success, an engine error, a start error, cancel, the scene
closing during a run and the module being cleaned up during a run."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from AVSMRegistrationLib import RegistrationJob, RegistrationOptions
from AVSMRegistrationLib.run_state import CANCELLED_MESSAGE, RunController, RunState
from slicer_test_support import scene_state

TICK_S = 0.05
FAST_AFFINE = RegistrationOptions(method="affine", device="cpu", affine_iterations=5, working_spacing=8.0)
LONG_VSVF = RegistrationOptions(method="vsvf-opt", device="cpu", affine_iterations=5, vsvf_iterations=500,
                                working_spacing=4.0)

LAUNCHER = """\
import os, subprocess, sys
child = subprocess.Popen([sys.executable, "-m", "avsm", *sys.argv[1:]])
with open(os.environ["AVSM_TEST_CHILD_PID"], "w") as handle:
    handle.write(str(child.pid))
sys.exit(child.wait())
"""
"""A stand-in for PythonSlicer, which starts python-real: the engine is a grandchild of the panel."""


class Recorder:
    """The panel's side of the controller: what it would show."""

    def __init__(self):
        self.progress, self.log, self.errors, self.finished = [], [], [], []

    def controller(self, **kwargs) -> RunController:
        return RunController(progress=lambda *event: self.progress.append(event), log=self.log.append,
                             finished=self.finished.append, report_error=self.errors.append, **kwargs)


def tick_until_stopped(controller: RunController, timeout: float = 120.0) -> int:
    """Call poll() like the panel's timer until it says stop; returns the number of ticks."""
    ticks, deadline = 0, time.monotonic() + timeout
    while controller.poll():
        ticks += 1
        assert time.monotonic() < deadline, f"still {controller.state} after {timeout} s"
        time.sleep(TICK_S)
    return ticks


def tick_until_stage(controller: RunController, recorder: Recorder, stage: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(event[0] == stage for event in recorder.progress):
        assert controller.poll(), f"the run stopped early: {controller.state}, {recorder.errors}"
        assert time.monotonic() < deadline, f"the engine never reached '{stage}'"
        time.sleep(TICK_S)


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"  # ended, not yet reaped


@pytest.fixture
def launcher(tmp_path_factory, monkeypatch):
    """(launcher command, file the engine's pid is written to)."""
    folder = tmp_path_factory.mktemp("launcher")
    script = folder / "python_slicer.py"
    script.write_text(LAUNCHER)
    pid_file = folder / "engine.pid"
    monkeypatch.setenv("AVSM_TEST_CHILD_PID", str(pid_file))
    return [sys.executable, str(script)], pid_file


def job_maker(nodes, options, tmp_path, **kwargs):
    return lambda: RegistrationJob(nodes["fixed"], nodes["moving"], options=options, tempRoot=tmp_path, **kwargs)


def test_a_successful_run_ends_finished_with_its_nodes(scene, nodes, tmp_path):
    recorder = Recorder()
    clock = iter(range(1000)).__next__
    controller = recorder.controller(clock=lambda: float(clock()))
    assert controller.state is RunState.IDLE and controller.button_text == "Register"
    assert controller.start(job_maker(nodes, FAST_AFFINE, tmp_path))
    assert controller.state is RunState.RUNNING and controller.button_text == "Cancel" and controller.active
    ticks = tick_until_stopped(controller)
    assert controller.state is RunState.FINISHED and controller.button_text == "Register"
    assert ticks > 0 and recorder.errors == []
    assert len(recorder.finished) == 1 and recorder.finished[0] is controller.nodes
    assert len(controller.nodes.nodes()) == 5  # transform, affine, warped, det(J), folds (no labels, no inverse)
    assert all(scene.IsNodePresent(node) for node in controller.nodes.nodes())
    assert recorder.progress[-1][1] == 1.0 and recorder.log[-1] == controller.nodes.summary
    assert controller.elapsed == 1.0  # two readings of the injected clock: start and end
    assert controller.poll() is False and os.listdir(tmp_path) == []


def test_an_engine_error_is_reported_once_and_polling_stops(scene, nodes, tmp_path):
    """The engine refuses a model name that is not bundled: it exits with its one-line error."""
    recorder = Recorder()
    controller = recorder.controller()
    before = scene_state(scene)
    refused = RegistrationOptions(method="avsm", device="cpu", model="avsm-brain")
    assert controller.start(job_maker(nodes, refused, tmp_path))
    tick_until_stopped(controller)
    assert controller.state is RunState.FAILED and controller.button_text == "Register" and not controller.active
    assert len(recorder.errors) == 1
    assert recorder.errors[0].startswith("Registration failed; the scene is unchanged: avsm: error: ")
    assert "unknown model 'avsm-brain'" in recorder.errors[0]
    for _ in range(20):  # further timer ticks (if any arrive) change nothing and report nothing
        assert controller.poll() is False
    assert len(recorder.errors) == 1 and recorder.finished == []
    assert scene_state(scene) == before
    assert os.listdir(tmp_path) == []
    assert controller.start(job_maker(nodes, FAST_AFFINE, tmp_path))  # Register works again
    controller.cancel()


def test_a_failed_run_keeps_its_files_when_asked_and_says_where(scene, nodes, tmp_path):
    recorder = Recorder()
    controller = recorder.controller()
    refused = RegistrationOptions(method="avsm", device="cpu", model="avsm-brain")
    assert controller.start(job_maker(nodes, refused, tmp_path, keepFiles=True))
    tick_until_stopped(controller)
    assert controller.state is RunState.FAILED and len(recorder.errors) == 1
    [kept] = list(tmp_path.iterdir())
    assert recorder.log[-2] == f"Intermediate files kept in {kept}"
    assert "unknown model 'avsm-brain'" in (kept / "engine.log").read_text()


def test_a_start_error_is_reported_once_and_nothing_runs(scene, nodes, tmp_path):
    recorder = Recorder()
    controller = recorder.controller()
    before = scene_state(scene)
    same = lambda: RegistrationJob(nodes["fixed"], nodes["fixed"], tempRoot=tmp_path)  # noqa: E731
    assert controller.start(same) is False
    assert controller.state is RunState.FAILED and controller.button_text == "Register"
    assert recorder.errors == ["Registration could not start: The fixed and moving volumes are the same node "
                               "'fixed'; pick two different volumes."]
    assert controller.poll() is False and len(recorder.errors) == 1
    assert scene_state(scene) == before and os.listdir(tmp_path) == []


def test_cancel_ends_the_whole_process_tree_within_two_seconds(scene, nodes, tmp_path, launcher):
    command, pid_file = launcher
    recorder = Recorder()
    controller = recorder.controller()
    before = scene_state(scene)
    assert controller.start(job_maker(nodes, LONG_VSVF, tmp_path, launcher=command))
    launcher_process = controller.job.process.process
    tick_until_stage(controller, recorder, "vsvf")  # 500 vSVF iterations ahead: minutes of work
    engine_pid = int(pid_file.read_text())
    assert engine_pid != launcher_process.pid and not process_gone(engine_pid)

    started = time.monotonic()
    controller.cancel()
    took = time.monotonic() - started
    assert took < 2.0
    assert process_gone(launcher_process.pid) and process_gone(engine_pid), "an engine process outlived Cancel"
    assert controller.state is RunState.IDLE and controller.button_text == "Register"
    assert recorder.errors == [] and recorder.log[-1] == CANCELLED_MESSAGE
    assert controller.poll() is False
    assert scene_state(scene) == before
    assert os.listdir(tmp_path) == []


def test_closing_the_scene_during_a_run_cancels_it(scene, nodes, tmp_path, launcher):
    command, pid_file = launcher
    recorder = Recorder()
    controller = recorder.controller()
    controller.watch_scene(scene)
    assert controller.start(job_maker(nodes, LONG_VSVF, tmp_path, launcher=command))
    tick_until_stage(controller, recorder, "vsvf")
    engine_pid = int(pid_file.read_text())

    started = time.monotonic()
    scene.Clear(0)  # File > Close Scene
    assert time.monotonic() - started < 2.0
    assert process_gone(engine_pid)
    assert controller.state is RunState.IDLE and recorder.errors == []
    assert controller.poll() is False  # the panel's next timer tick stops the timer
    assert scene.GetNumberOfNodesByClass("vtkMRMLTransformNode") == 0
    assert os.listdir(tmp_path) == []
    controller.close()


def test_module_cleanup_during_a_run_ends_it_and_stops_watching_the_scene(scene, nodes, tmp_path, launcher):
    command, pid_file = launcher
    recorder = Recorder()
    controller = recorder.controller()
    controller.watch_scene(scene)
    before = scene_state(scene)
    assert controller.start(job_maker(nodes, LONG_VSVF, tmp_path, launcher=command))
    tick_until_stage(controller, recorder, "vsvf")
    engine_pid = int(pid_file.read_text())

    controller.close()
    assert process_gone(engine_pid)
    assert controller.state is RunState.IDLE and controller.poll() is False
    assert scene_state(scene) == before and os.listdir(tmp_path) == []
    controller.state = RunState.RUNNING  # were the observer still there, a scene close would now cancel
    scene.Clear(0)
    assert controller.state is RunState.RUNNING


def test_an_unwritable_temporary_folder_is_one_line_before_anything_runs(scene, nodes):
    unwritable = Path("/sys")  # sysfs: no new folders, not even for root
    if not unwritable.is_dir():
        pytest.skip("no /sys here (not Linux): no folder that even root cannot write")
    recorder = Recorder()
    controller = recorder.controller()
    before = scene_state(scene)
    assert controller.start(job_maker(nodes, FAST_AFFINE, unwritable)) is False
    [error] = recorder.errors
    assert error.startswith("Registration could not start: The temporary folder /sys is not writable (")
    assert error.endswith("); choose another one in Application Settings (Temporary directory).")
    assert recorder.progress == [] and scene_state(scene) == before

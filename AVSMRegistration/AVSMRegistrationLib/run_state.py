"""The panel's run, as a state machine without Qt.

    idle -> starting -> running -> finished
                  \\          \\-> failed
                   \\-> failed   \\-> cancelling -> idle

The widget owns one `RunController`, forwards the Register/Cancel button to `start`/`cancel`, calls
`poll` from its timer and stops the timer when `poll` returns False. Every error of a run ends in
exactly one `report_error` call and a state from which Register works again; `poll` itself never
raises, so a repeating timer can never show the same error twice.
"""
from __future__ import annotations

import enum
import time
from typing import Callable

from .engine import ProgressCallback
from .errors import RegistrationCancelled
from .registration import RegistrationJob


class RunState(enum.Enum):
    IDLE = "idle"
    STARTING = "starting"
    RUNNING = "running"
    CANCELLING = "cancelling"
    FINISHED = "finished"
    FAILED = "failed"


ACTIVE_STATES = (RunState.STARTING, RunState.RUNNING, RunState.CANCELLING)

BUTTON_TEXT = {
    RunState.IDLE: "Register",
    RunState.STARTING: "Cancel",
    RunState.RUNNING: "Cancel",
    RunState.CANCELLING: "Cancelling...",
    RunState.FINISHED: "Register",
    RunState.FAILED: "Register",
}

CANCELLED_MESSAGE = "Cancelled; the scene is unchanged."
FAILED_MESSAGE = "Registration failed; the scene is unchanged: {error}"
START_FAILED_MESSAGE = "Registration could not start: {error}"
KEPT_FILES_MESSAGE = "Intermediate files kept in {folder}"


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[-1] if "\n" in text else text


class RunController:
    """One registration at a time, driven by `start`, `poll` (timer), `cancel` and `close`.

    Callbacks (all optional): `progress(stage, fraction, message)` and `log(text)` receive the
    engine's events, `finished(nodes)` the imported outputs (an error raised there fails the run),
    `report_error(message)` the one line that explains a failure. `clock` gives seconds (monotonic)
    for `elapsed`.
    """

    def __init__(self, progress: ProgressCallback | None = None, log: Callable[[str], None] | None = None,
                 finished: Callable[[object], None] | None = None,
                 report_error: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.progress, self.log, self.finished = progress, log, finished
        self.report_error = report_error
        self.clock = clock
        self.state = RunState.IDLE
        self.job: RegistrationJob | None = None
        self.nodes = None
        self.error: str | None = None
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self._watched: list[tuple[object, int]] = []

    # -- what the panel shows ------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """True while a run holds the engine (the timer must keep polling)."""
        return self.state in ACTIVE_STATES

    @property
    def button_text(self) -> str:
        return BUTTON_TEXT[self.state]

    @property
    def elapsed(self) -> float:
        if self.started_at is None:
            return 0.0
        return (self.ended_at if self.ended_at is not None else self.clock()) - self.started_at

    # -- transitions ---------------------------------------------------------------------------
    def start(self, make_job: Callable[[], RegistrationJob]) -> bool:
        """Build a job with `make_job` (dependency checks, input checks, export) and start its
        engine process. True when it runs; False after reporting why it could not start."""
        if self.active:
            raise RuntimeError(f"a registration is already {self.state.value}")
        self.state, self.job, self.nodes, self.error = RunState.STARTING, None, None, None
        self.started_at, self.ended_at = self.clock(), None
        try:
            job = make_job()
            self.job = job
            job.start()
        except Exception as error:  # noqa: BLE001 - every failure becomes one report
            self._fail(START_FAILED_MESSAGE.format(error=_one_line(error)))
            return False
        self.state = RunState.RUNNING
        return True

    def poll(self) -> bool:
        """Forward the engine's new events; import the outputs once it has stopped. Returns True
        while the caller should keep polling. Never raises."""
        if self.state is not RunState.RUNNING:
            return False
        try:
            stopped = self.job.poll(progress=self.progress, log=self.log)
            if not stopped:
                return True
            nodes = self.job.finish()
            if self.finished is not None:
                self.finished(nodes)
        except RegistrationCancelled:
            self._end(RunState.IDLE, CANCELLED_MESSAGE)
            return False
        except Exception as error:  # noqa: BLE001 - every failure becomes one report
            self._fail(FAILED_MESSAGE.format(error=_one_line(error)))
            return False
        self.nodes = nodes
        self._end(RunState.FINISHED, getattr(nodes, "summary", "") or "Registration finished.")
        return False

    def cancel(self) -> None:
        """Stop the engine (its whole process tree) and remove its files; the scene is unchanged."""
        if self.state not in (RunState.STARTING, RunState.RUNNING):
            return
        self.state = RunState.CANCELLING
        try:
            if self.job is not None:
                self.job.cancel()
        except Exception as error:  # noqa: BLE001
            self._fail(f"Cancelling failed: {_one_line(error)}")
            return
        self._end(RunState.IDLE, CANCELLED_MESSAGE)

    def close(self) -> None:
        """The scene is closing or the module is being cleaned up: cancel any run, stop watching."""
        self.cancel()
        self.unwatch_scene()

    # -- the scene the outputs go to -----------------------------------------------------------
    def watch_scene(self, scene) -> None:
        """Cancel a run when `scene` starts to close (its outputs would land in the next scene)."""
        tag = scene.AddObserver(scene.StartCloseEvent, lambda caller, event: self.cancel())
        self._watched.append((scene, tag))

    def unwatch_scene(self) -> None:
        for scene, tag in self._watched:
            scene.RemoveObserver(tag)
        self._watched = []

    # -- helpers -------------------------------------------------------------------------------
    def _end(self, state: RunState, message: str) -> None:
        kept = getattr(self.job, "kept_folder", None)
        self.state = state
        self.ended_at = self.clock()
        self.job = None
        if self.log is not None:
            if kept is not None:
                self.log(KEPT_FILES_MESSAGE.format(folder=kept))
            self.log(message)

    def _fail(self, message: str) -> None:
        job = self.job
        if job is not None:
            try:
                job.cancel()  # ends a process that may still run and removes the files
            except Exception:  # noqa: BLE001 - the first error is the one to report
                pass
        self.error = message
        self._end(RunState.FAILED, message)
        if self.report_error is not None:
            self.report_error(message)

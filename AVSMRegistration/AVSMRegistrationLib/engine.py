"""Running the `avsm` engine: in this process (console, blocking) or as a background command
(`avsm register ... --progress json`, for the panel) with progress events and Cancel.

Both ways end in the same `EngineOutputs`: images on the fixed grid, the transform files and the
report, so the scene is built by one piece of code whatever ran the engine.
"""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import SimpleITK as sitk

from .errors import RegistrationCancelled, RegistrationFailed, RegistrationInputError
from .options import RegistrationOptions

ProgressCallback = Callable[[str, float, str], None]
"""progress(stage, fraction 0..1, message), the engine's own signature."""

MODULE_DIR = Path(__file__).resolve().parent.parent
"""The scripted module's folder; it holds the engine package `avsm` shipped with the extension."""


@dataclass
class EngineInputs:
    fixed: sitk.Image
    moving: sitk.Image
    moving_labels: Optional[sitk.Image] = None
    fixed_labels: Optional[sitk.Image] = None
    fixed_mask: Optional[sitk.Image] = None      # uint8 0/1 on the fixed grid
    moving_mask: Optional[sitk.Image] = None     # uint8 0/1 on the moving grid
    initial_transform: Optional[sitk.Transform] = None  # linear, fixed -> moving physical points (LPS)


@dataclass
class EngineOutputs:
    warped: sitk.Image
    warped_labels: Optional[sitk.Image]
    det_jacobian: sitk.Image
    folds: sitk.Image
    transform_file: Path   # ITK composite, fixed -> moving physical points (LPS, resampling)
    affine_file: Path      # ITK affine part, same convention
    report: dict
    inverse_file: Optional[Path] = None  # ITK inverse: moving -> fixed physical points


def run_in_process(inputs: EngineInputs, options: RegistrationOptions, workdir: Path,
                   progress: ProgressCallback | None = None) -> EngineOutputs:
    """Call `avsm.register` here and now (blocks); transforms are written into `workdir`."""
    import avsm  # imported on use: the engine needs torch, installed on the first run

    try:
        result = avsm.register(inputs.fixed, inputs.moving, moving_labels=inputs.moving_labels,
                               fixed_labels=inputs.fixed_labels, fixed_mask=inputs.fixed_mask,
                               moving_mask=inputs.moving_mask, initial_transform=inputs.initial_transform,
                               progress=progress, **options.engine_kwargs())
    except avsm.AVSMError as error:
        raise RegistrationInputError(str(error)) from error
    workdir = Path(workdir)
    transform_file, affine_file = workdir / "transform.h5", workdir / "affine.tfm"
    inverse_file = workdir / "inverse.h5"
    sitk.WriteTransform(result.transform, str(transform_file))
    sitk.WriteTransform(result.affine, str(affine_file))
    sitk.WriteTransform(result.inverse, str(inverse_file))
    return EngineOutputs(result.warped, result.warped_labels, result.det_jacobian, result.folds,
                         transform_file, affine_file, dict(result.report), inverse_file)


def read_outputs(outdir: Path) -> EngineOutputs:
    """The files `avsm register -o OUTDIR` wrote, loaded."""
    outdir = Path(outdir)
    labels = outdir / "warped_labels.nii.gz"
    return EngineOutputs(
        warped=sitk.ReadImage(str(outdir / "warped.nii.gz")),
        warped_labels=sitk.ReadImage(str(labels)) if labels.exists() else None,
        det_jacobian=sitk.ReadImage(str(outdir / "jacobian.nii.gz")),
        folds=sitk.ReadImage(str(outdir / "folds.nii.gz")),
        transform_file=outdir / "transform.h5",
        affine_file=outdir / "affine.tfm",
        report=json.loads((outdir / "report.json").read_text()),
        inverse_file=outdir / "inverse.h5",
    )


def parse_line(line: str) -> dict:
    """One stdout line of `--progress json` as an event; other text becomes a "log" event."""
    text = line.strip()
    if text.startswith("{"):
        try:
            event = json.loads(text)
        except json.JSONDecodeError:
            event = None
        if isinstance(event, dict) and "event" in event:
            return event
    return {"event": "log", "message": text}


OPTIONAL_INPUT_FLAGS = (("moving_labels", "--moving-labels"), ("fixed_labels", "--fixed-labels"),
                        ("fixed_mask", "--fixed-mask"), ("moving_mask", "--moving-mask"),
                        ("initial_transform", "--initial-transform"))
"""Optional engine inputs and their `avsm register` options."""


def write_inputs(inputs: EngineInputs, folder: Path) -> dict[str, Path]:
    """Write the inputs as uncompressed NRRD files (LPS geometry kept) and the initial transform as an ITK
    text file; returns role -> path."""
    paths = {}
    for role in ("fixed", "moving", "moving_labels", "fixed_labels", "fixed_mask", "moving_mask"):
        image = getattr(inputs, role)
        if image is not None:
            paths[role] = Path(folder) / f"{role}.nrrd"
            sitk.WriteImage(image, str(paths[role]), False)
    if inputs.initial_transform is not None:
        paths["initial_transform"] = Path(folder) / "initial_transform.tfm"
        sitk.WriteTransform(inputs.initial_transform, str(paths["initial_transform"]))
    return paths


def engine_environment(device: str, base: dict | None = None) -> dict:
    """Environment of the background command: the shipped engine importable, CPU forced when asked."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(MODULE_DIR), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # a CUDA build of torch then never touches the GPU
    return env


class EngineProcess:
    """`avsm register` in a background process, read without blocking.

    Call `poll()` regularly (the panel uses a timer): it returns the events printed since the last
    call. `cancel()` ends the process (and its children) within about a second.
    """

    def __init__(self, inputs: EngineInputs, options: RegistrationOptions, workdir: Path,
                 python: str | None = None, launcher: list[str] | None = None, env: dict | None = None):
        self.workdir = Path(workdir)
        self.outdir = self.workdir / "out"
        files = write_inputs(inputs, self.workdir)
        launcher = launcher or [python or sys.executable, "-m", "avsm"]
        self.command = [*launcher, "register", str(files["fixed"]), str(files["moving"]), "-o", str(self.outdir),
                        *options.command_line(), "--progress", "json"]
        for role, flag in OPTIONAL_INPUT_FLAGS:
            if role in files:
                self.command += [flag, str(files[role])]
        self.env = engine_environment(options.device, env)
        self.process: subprocess.Popen | None = None
        self.cancelled = False
        self.done_event: dict | None = None
        self._lines: queue.Queue = queue.Queue()
        self._stderr: list[str] = []

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        bufsize=1, env=self.env, cwd=str(self.workdir), **popen_options())
        threading.Thread(target=self._pump, args=(self.process.stdout, self._lines.put), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.process.stderr, self._stderr.append), daemon=True).start()

    @staticmethod
    def _pump(stream, sink) -> None:
        for line in iter(stream.readline, ""):
            sink(line.rstrip("\n"))
        stream.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def poll(self) -> list[dict]:
        """Events printed since the last call (progress, log, done)."""
        events = []
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line.strip():
                event = parse_line(line)
                if event.get("event") == "done":
                    self.done_event = event
                events.append(event)
        return events

    def wait(self, progress: ProgressCallback | None = None, log: Callable[[str], None] | None = None,
             interval: float = 0.1) -> EngineOutputs:
        """Block until the process ends, forwarding events; returns its outputs."""
        while True:
            finished = not self.running
            for event in self.poll():
                forward(event, progress, log)
            if finished:
                return self.outputs()
            time.sleep(interval)

    def cancel(self, grace: float = 1.0) -> None:
        """Stop the process and every process it started (PythonSlicer starts python-real, which
        runs the engine); returns within about `grace` seconds."""
        self.cancelled = True
        if self.process is None:
            return
        end_process_tree(self.process, grace)

    def stderr_lines(self) -> list[str]:
        return list(self._stderr)

    def error_message(self) -> str:
        lines = [line.strip() for line in self._stderr if line.strip()]
        return lines[-1] if lines else f"the engine stopped with exit code {self.process.returncode}"

    def outputs(self) -> EngineOutputs:
        if self.cancelled:
            raise RegistrationCancelled("Registration cancelled.")
        self.process.wait()
        for _ in range(50):  # let the reader threads hand over the last lines
            if self.process.stdout.closed and self.process.stderr.closed:
                break
            time.sleep(0.01)
        self.poll()
        if self.process.returncode != 0:
            raise RegistrationFailed(self.error_message())
        return read_outputs(self.outdir)


WINDOWS_CREATE_NEW_PROCESS_GROUP = 0x00000200
WINDOWS_CREATE_NO_WINDOW = 0x08000000
"""Win32 process creation flags (the values of subprocess.CREATE_*, which exist only on Windows)."""


def popen_options(os_name: str = os.name) -> dict:
    """`subprocess.Popen` keywords that make the engine its own process group, without a window.

    POSIX: a new session, so one signal to the group reaches the launcher and its children.
    Windows: no console window (CREATE_NO_WINDOW plus a hidden STARTUPINFO) and a new process group;
    the tree is ended with ``taskkill /T`` (see `end_process_tree`).
    """
    if os_name != "nt":
        return {"start_new_session": True}
    options = {"creationflags": WINDOWS_CREATE_NEW_PROCESS_GROUP | WINDOWS_CREATE_NO_WINDOW}
    if hasattr(subprocess, "STARTUPINFO"):
        startupinfo = subprocess.STARTUPINFO()
        startupinfo.dwFlags |= subprocess.STARTF_USESHOWWINDOW
        startupinfo.wShowWindow = 0  # SW_HIDE
        options["startupinfo"] = startupinfo
    return options


def end_process_tree(process: subprocess.Popen, grace: float = 1.0) -> None:
    """End `process` (started with `popen_options`) and all its descendants.

    POSIX: SIGTERM to the process group, then SIGKILL to whatever of the group is left after
    `grace` seconds (a child can outlive its launcher). Windows: ``taskkill /T /F`` walks the tree
    while the launcher still exists, so it comes first; `Popen.kill` would end only the launcher.
    """
    if os.name == "nt":
        if process.poll() is None:
            subprocess.run(["taskkill", "/T", "/F", "/PID", str(process.pid)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, creationflags=WINDOWS_CREATE_NO_WINDOW, check=False)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=grace)
        return
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(process.pid, signal.SIGKILL)
    process.wait(timeout=grace)
    deadline = time.monotonic() + grace
    while _signal_group(process.pid, 0) and time.monotonic() < deadline:
        time.sleep(0.01)  # a killed child of the launcher takes a moment to go


def _signal_group(pgid: int, signum: int) -> bool:
    """Send `signum` to the process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def forward(event: dict, progress: ProgressCallback | None, log: Callable[[str], None] | None) -> None:
    """Hand one engine event to the caller's progress and log callbacks."""
    kind = event.get("event")
    if kind == "progress":
        if progress:
            progress(str(event.get("stage", "")), float(event.get("fraction", 0.0)), str(event.get("message", "")))
        if log and event.get("message"):
            log(f"[{event.get('stage', '')}] {event['message']}")
    elif kind == "done":
        if log and event.get("summary"):
            log(str(event["summary"]))
    elif log and event.get("message"):
        log(str(event["message"]))


def describe_device(choice: str) -> str:
    """What `choice` (auto/cpu/cuda) runs on here, for the panel's log."""
    if choice == "cpu":
        return "CPU (chosen)"
    try:
        import torch
    except ImportError:
        return f"{choice} (PyTorch is not installed yet)"
    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)}"
    if choice == "cuda":
        return "GPU requested, but PyTorch sees no CUDA GPU: the run will fail (choose auto or CPU)"
    return "CPU (no CUDA GPU found)"

"""One registration from volume nodes to output nodes: check, export, run, import, clean up.

`RegistrationJob` is what the panel drives (start, poll from a timer, cancel, finish);
`register_volumes` is the blocking call the console and the module's Logic use.
"""
from __future__ import annotations

import shlex
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import SimpleITK as sitk

from .errors import RegistrationInputError
from .engine import EngineInputs, EngineProcess, ProgressCallback, forward, run_in_process
from .geometry import engine_transform_from_node, image_from_volume
from .labels import label_image, mask_image
from .options import OPTIONAL_OUTPUT_KEYS, OUTPUT_KEYS, RegistrationOptions
from .outputs import RegistrationNodes, build_nodes
from .summary import summary_text
from .validation import check_inputs


class RegistrationJob:
    """A registration whose inputs passed every check. Nothing in the scene changes until `finish`
    succeeds; after an error or `cancel` the scene is as it was and the temporary files are gone."""

    def __init__(self, fixed, moving, movingLabels=None, fixedLabels=None,
                 options: RegistrationOptions = RegistrationOptions(), outputs: dict | None = None,
                 showGrid: bool = True, tempRoot: str | Path | None = None,
                 python: str | None = None, launcher: list[str] | None = None, keepFiles: bool = False,
                 fixedMask=None, movingMask=None, initialTransform=None):
        outputs = {key: key not in OPTIONAL_OUTPUT_KEYS for key in OUTPUT_KEYS} if outputs is None else dict(outputs)
        check_inputs(fixed, moving, movingLabels, fixedLabels, outputs, fixedMask, movingMask, initialTransform)
        self.options = options.validated()
        self.fixed, self.moving = fixed, moving
        self.movingLabels, self.fixedLabels = movingLabels, fixedLabels
        self.fixedMask, self.movingMask, self.initialTransform = fixedMask, movingMask, initialTransform
        self.outputs = outputs
        self.showGrid = showGrid
        self.tempRoot = tempRoot
        self.python, self.launcher = python, launcher
        self.process: EngineProcess | None = None
        self.workdir: Path | None = None
        self.started_at: float | None = None
        self.label_source = None
        self.keep_files = keepFiles
        self.kept_folder: Path | None = None

    # -- preparation ---------------------------------------------------------------------------
    def _engine_inputs(self) -> EngineInputs:
        """Copies of the input voxels as SimpleITK images (LPS), masks on their volumes' grids and the initial
        transform in the engine's convention; the nodes are not touched. An empty mask stops here."""
        fixed = image_from_volume(self.fixed, sitk.sitkFloat32)
        moving = image_from_volume(self.moving, sitk.sitkFloat32)
        moving_labels = fixed_labels = None
        if self.movingLabels is not None:
            moving_labels, self.label_source = label_image(self.movingLabels, self.moving)
        if self.fixedLabels is not None:
            fixed_labels, _ = label_image(self.fixedLabels, self.fixed)
        fixed_mask = mask_image(self.fixedMask, self.fixed, "fixed") if self.fixedMask is not None else None
        moving_mask = mask_image(self.movingMask, self.moving, "moving") if self.movingMask is not None else None
        initial = (engine_transform_from_node(self.initialTransform) if self.initialTransform is not None
                   else None)
        return EngineInputs(fixed, moving, moving_labels, fixed_labels, fixed_mask, moving_mask, initial)

    def _make_workdir(self) -> Path:
        """The run's temporary folder (inputs, engine outputs); making it is the check that the
        temporary root is writable, before anything is exported or run."""
        try:
            self.workdir = Path(tempfile.mkdtemp(prefix="AVSMRegistration-", dir=self.tempRoot))
        except OSError as error:
            root = self.tempRoot or tempfile.gettempdir()
            raise RegistrationInputError(f"The temporary folder {root} is not writable ({error.strerror}); "
                                         "choose another one in Application Settings (Temporary directory).") from None
        return self.workdir

    def cleanup(self, keep: bool | None = None) -> None:
        """Remove the temporary folder, or (`keepFiles`) leave it with the engine's command line and
        messages in `engine.log` for a bug report; `kept_folder` then names it."""
        if self.workdir is None:
            return
        if self.keep_files if keep is None else keep:
            log = [shlex.join(self.process.command), *self.process.stderr_lines()] if self.process is not None else []
            (self.workdir / "engine.log").write_text("\n".join(log) + "\n")
            self.kept_folder = self.workdir
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None

    # -- background run (panel) ----------------------------------------------------------------
    def start(self) -> None:
        self.started_at = time.monotonic()
        workdir = self._make_workdir()
        try:
            inputs = self._engine_inputs()
            self.process = EngineProcess(inputs, self.options, workdir,
                                         python=self.python, launcher=self.launcher)
            self.process.start()
        except BaseException:
            self.cleanup()
            raise

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def poll(self, progress: ProgressCallback | None = None, log: Callable[[str], None] | None = None) -> bool:
        """Forward new engine events; True once the engine has stopped (then call `finish`)."""
        finished = not self.running
        for event in self.process.poll():
            forward(event, progress, log)
        return finished

    def cancel(self) -> None:
        """Stop the engine; its files are removed even with `keepFiles` (a cancel is not a bug)."""
        try:
            if self.process is not None:
                self.process.cancel()
        finally:
            self.cleanup(keep=False)

    def finish(self) -> RegistrationNodes:
        """Import the engine's outputs into the scene (all or nothing) and remove the temporary files."""
        try:
            return self._import(self.process.outputs())
        finally:
            self.cleanup()

    # -- in-process run (console) --------------------------------------------------------------
    def run_in_process(self, progress: ProgressCallback | None = None) -> RegistrationNodes:
        self.started_at = time.monotonic()
        workdir = self._make_workdir()
        try:
            outputs = run_in_process(self._engine_inputs(), self.options, workdir, progress)
            return self._import(outputs)
        finally:
            self.cleanup()

    def _import(self, outputs) -> RegistrationNodes:
        seconds = time.monotonic() - self.started_at
        summary = summary_text(outputs.report, seconds, self.moving.GetName(), self.fixed.GetName())
        labels_name = self.movingLabels.GetName() if self.movingLabels is not None else ""
        return build_nodes(outputs, self.fixed, self.moving, self.outputs, self.label_source, labels_name,
                           summary, self.showGrid)


def register_volumes(fixedNode, movingNode, method: str | None = None, movingLabels=None, fixedLabels=None,
                     preset: str | None = None, device: str = "auto", model: str | None = None,
                     networkAffineSteps: int | None = None, networkVsvfSteps: int | None = None,
                     affineRefine: int | None = None, instanceOpt: int | None = None,
                     affineIterations: int | None = None, vsvfIterations: int | None = None,
                     workingSpacing: float | None = None,
                     outputTransform=True, outputAffine=True, outputWarped=True, outputWarpedLabels=True,
                     outputJacobian=True, outputFolds=True, showGrid: bool = True,
                     progress: ProgressCallback | None = None, log: Callable[[str], None] | None = None,
                     background: bool = False, tempRoot: str | Path | None = None,
                     python: str | None = None, launcher: list[str] | None = None,
                     outputInverse=False, keepFiles: bool = False, fixedMask=None, movingMask=None,
                     initialTransform=None, similarity: str | None = None) -> RegistrationNodes:
    """Register `movingNode` to `fixedNode` and return the created nodes (blocking).

    `preset` ("fast", "default", "accurate") or `method` ("avsm", "voxelmorph", "vsvf-opt", "affine") as in
    `avsm.register`: neither runs the default preset, a method alone runs it with its own defaults, both must
    agree (`avsm.methods` lists them). The method's options, each refused by a method that does not take it
    (`avsm.methods` declares them): networkAffineSteps, networkVsvfSteps (the networks' test-time steps),
    affineRefine, instanceOpt and model (network methods), affineIterations and vsvfIterations (the affine
    and vSVF optimisations' iterations). Each output* is True (create a new node, the default), False/None
    (skip it) or an existing node to fill; outputInverse (the moving -> fixed inverse transform) is off
    unless asked for.
    `fixedMask` / `movingMask` (label map or segmentation, non-zero or any segment: inside): the images are
    compared only inside them (a label map on another grid is resampled onto its volume's). `initialTransform`:
    a linear transform node that aligns the moving volume placed under it with the fixed volume (e.g. from
    landmarks); it replaces the centre-of-mass start of the affine stage. `similarity`: "auto" (the
    default: detected from the roughly aligned volumes), "lncc" (local correlation, same contrast) or "mi" (mutual
    information, e.g. T1 against T2).
    Inputs are never modified; on any error nothing is added to the scene. `keepFiles=True` leaves
    the temporary folder (inputs, engine outputs, engine.log) for a bug report.
    `background=True` runs the engine as a separate `avsm register` process (as the panel does)
    instead of calling it in this process.
    """
    options = RegistrationOptions(preset=preset, method=method, device=device, model=model or None,
                                  network_affine_steps=networkAffineSteps, network_vsvf_steps=networkVsvfSteps,
                                  affine_refine=affineRefine, instance_opt=instanceOpt,
                                  affine_iterations=affineIterations, vsvf_iterations=vsvfIterations,
                                  working_spacing=workingSpacing, similarity=similarity)
    outputs = dict(zip(OUTPUT_KEYS, (outputTransform, outputAffine, outputWarped, outputWarpedLabels,
                                     outputJacobian, outputFolds, outputInverse)))
    job = RegistrationJob(fixedNode, movingNode, movingLabels, fixedLabels, options, outputs, showGrid,
                          tempRoot, python, launcher, keepFiles, fixedMask=fixedMask, movingMask=movingMask,
                          initialTransform=initialTransform)
    if not background:
        return job.run_in_process(progress)
    job.start()
    try:
        job.process.wait(progress, log)
    except BaseException:
        job.cancel()
        raise
    return job.finish()

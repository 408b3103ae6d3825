"""AVSM Registration: deep and optimisation-based deformable registration of two volumes.

Module (metadata), Widget (the panel: forwards the button, the timer and scene close to the run
controller), Logic (dependencies and the calls into the Qt-free scene bridge `AVSMRegistrationLib`),
Test (self-test on the sample pair bundled with the engine).
Console use:

    logic = slicer.util.getModuleLogic("AVSMRegistration")
    nodes = logic.register(fixedNode, movingNode)                    # the default preset
    nodes = logic.register(fixedNode, movingNode, preset="fast")     # or "accurate"
    nodes = logic.register(fixedNode, movingNode, method="vsvf-opt")  # a method with its own defaults
    nodes = logic.register(fixedNode, movingNode, fixedMask=brainMask, initialTransform=landmarkTransform)
    nodes = logic.register(t1Node, t2Node, similarity="mi")         # different contrasts, said explicitly
"""
from __future__ import annotations

import enum
import os
import shutil
from typing import Annotated, Optional, Union

import qt
import vtk

import slicer
from slicer import (vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode,
                    vtkMRMLTransformNode)
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from AVSMRegistrationLib import (CHOICES, DEFAULT_CHOICE, DEFAULT_SIMILARITY, DEVICES, PANEL_BOXES,
                                 SIMILARITY_LABELS, RegistrationJob, RegistrationOptions, box_state, choice_by_name,
                                 input_problem, register_volumes)
from AVSMRegistrationLib.dependencies import (TORCH_REQUIREMENT, installed_problem, installed_version,
                                              optional_import, version_note)
from AVSMRegistrationLib.engine import describe_device
from AVSMRegistrationLib.run_state import RunController, RunState
from AVSMRegistrationLib.validation import default_fixed_volume


class AVSMRegistration(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("AVSM Registration")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Registration")]
        self.parent.dependencies = []
        self.parent.contributors = ["AVSMRegistration contributors"]
        self.parent.helpText = _(
            "Register a moving volume to a fixed volume with a preset (Fast: the AVSM network; Default: the network "
            "refined for the pair; Accurate: vSVF optimisation) or, for advanced use, one method alone: the AVSM "
            "networks (recurrent affine + vSVF), VoxelMorph, vSVF or affine optimisation. Outputs: the full and "
            "affine transforms, the warped volume and labels, a det(J) volume (blue: shrinking, white: 1, red: "
            "expanding), a fold mask (det(J) <= 0) and a deformation grid in the slice views; optionally the inverse "
            "transform. The run happens in a background process; Cancel stops it.")
        self.parent.acknowledgementText = _(
            "Methods: Shen, Han, Xu, Niethammer, 'Networks for Joint Affine and Non-parametric Image "
            "Registration' (CVPR 2019, AVSM/vSVF) and Balakrishnan et al., 'VoxelMorph' (IEEE TMI 2019). "
            "Built on PyTorch, SimpleITK and the 3D Slicer scripted-module template.")


# Combo-box choices: the value is the engine's name (a preset, then the methods alone), `label` is what the
# panel shows (the parameter-node connector calls `label` on the enum class).
MethodChoice = enum.Enum("MethodChoice", [(c.name, c.name) for c in CHOICES])
MethodChoice.label = lambda choice: choice_by_name(choice.value).label
DeviceChoice = enum.Enum("DeviceChoice", [(d, d) for d in DEVICES])
DeviceChoice.label = lambda choice: {"auto": "auto (GPU if available)", "cpu": "CPU", "cuda": "GPU (CUDA)"}[choice.value]
ContrastChoice = enum.Enum("ContrastChoice", [(s, s) for s in SIMILARITY_LABELS])  # the affine stage's similarity
ContrastChoice.label = lambda choice: SIMILARITY_LABELS[choice.value]


@parameterNodeWrapper
class AVSMRegistrationParameterNode:
    """Panel state, saved with the scene. 0 steps / iterations means "the method's default". Each Advanced box
    sets the option of the chosen method that ``AVSMRegistrationLib.PANEL_BOXES`` names for it."""

    fixedVolume: vtkMRMLScalarVolumeNode
    movingVolume: vtkMRMLScalarVolumeNode
    movingLabels: Optional[Union[vtkMRMLLabelMapVolumeNode, vtkMRMLSegmentationNode]]
    fixedLabels: Optional[Union[vtkMRMLLabelMapVolumeNode, vtkMRMLSegmentationNode]]
    fixedMask: Optional[Union[vtkMRMLLabelMapVolumeNode, vtkMRMLSegmentationNode]]
    movingMask: Optional[Union[vtkMRMLLabelMapVolumeNode, vtkMRMLSegmentationNode]]
    initialTransform: Optional[vtkMRMLTransformNode]  # linear only: the validation refuses others by name
    method: MethodChoice = MethodChoice[DEFAULT_CHOICE]  # a preset or a method
    contrast: ContrastChoice = ContrastChoice[DEFAULT_SIMILARITY]  # detected from the images
    affineSteps: Annotated[int, WithinRange(0, 10000)] = 0
    vsvfSteps: Annotated[int, WithinRange(0, 10000)] = 0
    instanceOptIterations: Annotated[int, WithinRange(0, 10000)] = 0
    affineRefine: Annotated[int, WithinRange(-1, 10000)] = -1  # -1: the engine's default
    device: DeviceChoice = DeviceChoice["auto"]
    modelPath: str = ""  # bound by hand: the path widget's connector shows an empty Path as "."
    createTransform: bool = True
    outputTransform: vtkMRMLTransformNode
    createAffine: bool = True
    outputAffine: vtkMRMLTransformNode
    createWarped: bool = True
    outputWarped: vtkMRMLScalarVolumeNode
    createWarpedLabels: bool = True
    outputWarpedLabels: Optional[Union[vtkMRMLLabelMapVolumeNode, vtkMRMLSegmentationNode]]
    createJacobian: bool = True
    outputJacobian: vtkMRMLScalarVolumeNode
    createFolds: bool = True
    outputFolds: vtkMRMLLabelMapVolumeNode
    createInverse: bool = False
    outputInverse: vtkMRMLTransformNode
    showGrid: bool = True
    keepIntermediateFiles: bool = False


class AVSMRegistrationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel. It reads widgets, forwards the button and the timer to a `RunController` and
    shows what it reports; the run's states live in `AVSMRegistrationLib.run_state`."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.run = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._timer = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/AVSMRegistration.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = AVSMRegistrationLogic()
        self.run = RunController(progress=self.onProgress, log=self.appendLog,
                                 finished=lambda nodes: self.logic.showResults(self._parameterNode, nodes),
                                 report_error=lambda message: slicer.util.errorDisplay(message))
        self.run.watch_scene(slicer.mrmlScene)  # a closing scene cancels the run

        self._timer = qt.QTimer()
        self._timer.setInterval(200)
        self._timer.connect("timeout()", self.onTimer)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.registerButton.connect("clicked(bool)", self.onRegisterButton)
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self.onModelPathChanged)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        if self.run is not None:
            self.run.close()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        self.run.cancel()  # its outputs would land in the next scene (the controller watches too)
        self.onTimer()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.fixedVolume:
            self._parameterNode.fixedVolume = default_fixed_volume(slicer.mrmlScene)

    def setParameterNode(self, inputParameterNode: Optional[AVSMRegistrationParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
            self.onParameterNodeModified()

    def onParameterNodeModified(self, caller=None, event=None) -> None:
        """Everything derived from the parameter node, read after it changed (so never one
        selection behind, as a slot on the combo box itself would be)."""
        p = self._parameterNode
        if not p:
            return
        self.ui.methodDescriptionLabel.text = choice_by_name(p.method.value).description
        for box, widget in (("affineSteps", self.ui.affineStepsSpinBox), ("vsvfSteps", self.ui.vsvfStepsSpinBox),
                            ("instanceOptIterations", self.ui.instanceOptSpinBox),
                            ("affineRefine", self.ui.affineRefineSpinBox)):
            widget.enabled, widget.toolTip = box_state(box, p.method.value)
        if self.ui.modelPathLineEdit.currentPath != p.modelPath:
            self.ui.modelPathLineEdit.currentPath = p.modelPath
        self.updateButton()

    def onModelPathChanged(self, path: str) -> None:
        if self._parameterNode:
            self._parameterNode.modelPath = path

    def updateButton(self) -> None:
        self.ui.registerButton.text = _(self.run.button_text)
        if self.run.active:
            self.ui.registerButton.enabled = True
            self.ui.registerButton.toolTip = _("Stop the registration; nothing is added to the scene.")
            return
        problem = self.logic.inputProblem(self._parameterNode) if self._parameterNode else _("Loading...")
        self.ui.registerButton.enabled = problem is None
        self.ui.registerButton.toolTip = problem or _("Register the moving volume to the fixed volume.")
        self.ui.inputStatusLabel.text = problem or ""

    def onRegisterButton(self) -> None:
        if self.run.active:
            self.run.cancel()
        else:
            self.ui.statusLog.clear()
            self.ui.progressBar.value = 0
            with slicer.util.WaitCursor():
                if self.run.start(lambda: self.logic.startRegistration(self._parameterNode, log=self.appendLog)):
                    self._timer.start()
        self.updateButton()

    def onTimer(self) -> None:
        if not self.run.poll():
            self._timer.stop()
            self.updateButton()

    def onProgress(self, stage: str, fraction: float, message: str) -> None:
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.progressBar.format = f"{stage}: %p%"

    def appendLog(self, text: str) -> None:
        self.ui.statusLog.appendPlainText(text)


class AVSMRegistrationLogic(ScriptedLoadableModuleLogic):
    """Everything the panel does, callable from the Python console. Each call goes to the
    Qt-free `AVSMRegistrationLib`; this class adds only dependencies and Slicer paths."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self) -> AVSMRegistrationParameterNode:
        return AVSMRegistrationParameterNode(super().getParameterNode())

    # -- console -------------------------------------------------------------------------------
    def register(self, fixedNode, movingNode, method: Optional[str] = None, movingLabels=None, fixedLabels=None,
                 preset: Optional[str] = None, fixedMask=None, movingMask=None, initialTransform=None, **kwargs):
        """Register `movingNode` to `fixedNode` in this process (blocks) and return the created nodes.
        `preset="fast"` (or "default", "accurate") or `method="vsvf-opt"` (or "avsm", "voxelmorph", "affine");
        neither: the default preset. `fixedMask` / `movingMask`: label maps or segmentations, the images are
        compared only inside them; `initialTransform`: a linear transform node that aligns the moving volume
        placed under it with the fixed one (replaces the centre-of-mass start). Keywords as `AVSMRegistrationLib.register_volumes` (device, model,
        networkAffineSteps, networkVsvfSteps, affineRefine, instanceOpt, affineIterations, vsvfIterations: each
        method takes its own; workingSpacing, similarity ("auto": detected from the
        images, the default; "lncc": same contrast; "mi": mutual information, e.g. T1 against T2),
        output*=True/False/node, outputInverse, showGrid, progress, keepFiles)."""
        self.ensureDependencies()
        kwargs.setdefault("tempRoot", slicer.app.temporaryPath)
        return register_volumes(fixedNode, movingNode, method=method, movingLabels=movingLabels,
                                fixedLabels=fixedLabels, preset=preset, fixedMask=fixedMask, movingMask=movingMask,
                                initialTransform=initialTransform, **kwargs)

    # -- panel ---------------------------------------------------------------------------------
    OUTPUT_FIELDS = (("transform", "Transform"), ("affine", "Affine"), ("warped", "Warped"),
                     ("warpedLabels", "WarpedLabels"), ("jacobian", "Jacobian"), ("folds", "Folds"),
                     ("inverse", "Inverse"))
    """Output key -> the parameter node's create<Name> / output<Name> pair."""

    @classmethod
    def _outputs(cls, p: AVSMRegistrationParameterNode) -> dict:
        return {key: (getattr(p, f"output{name}") or True) if getattr(p, f"create{name}") else False
                for key, name in cls.OUTPUT_FIELDS}

    @staticmethod
    def _options(p: AVSMRegistrationParameterNode) -> RegistrationOptions:
        return RegistrationOptions.from_panel(p.method.value, p.device.value, p.modelPath,
                                              {box: getattr(p, box) for box in PANEL_BOXES}, p.contrast.value)

    def inputProblem(self, p: AVSMRegistrationParameterNode) -> Optional[str]:
        """Why Register is disabled (one sentence), or None."""
        return input_problem(p.fixedVolume, p.movingVolume, p.movingLabels, p.fixedLabels, self._outputs(p),
                             p.fixedMask, p.movingMask, p.initialTransform)

    def startRegistration(self, p: AVSMRegistrationParameterNode, log=None) -> RegistrationJob:
        """Check the dependencies and the inputs and return the job that runs `avsm register` in a
        background process (the panel's RunController starts it)."""
        self.ensureDependencies(log)
        if log:
            log(_("Device: {device}").format(device=describe_device(p.device.value)))
        return RegistrationJob(p.fixedVolume, p.movingVolume, p.movingLabels, p.fixedLabels, self._options(p),
                               self._outputs(p), p.showGrid, tempRoot=slicer.app.temporaryPath,
                               python=shutil.which("PythonSlicer") or None, keepFiles=p.keepIntermediateFiles,
                               fixedMask=p.fixedMask, movingMask=p.movingMask, initialTransform=p.initialTransform)

    def showResults(self, p: AVSMRegistrationParameterNode, nodes) -> None:
        """Remember the new output nodes in the panel and show fixed and warped together."""
        for key, name in self.OUTPUT_FIELDS:
            node = getattr(nodes, key)
            if node is not None:
                setattr(p, f"output{name}", node)
        if nodes.warped is not None:
            label = nodes.folds if nodes.folds is not None and nodes.report.get("fold_count") else "keep-current"
            slicer.util.setSliceViewerLayers(background=p.fixedVolume, foreground=nodes.warped,
                                             foregroundOpacity=0.5, label=label)

    # -- dependencies --------------------------------------------------------------------------
    def ensureDependencies(self, log=None) -> None:
        """Install PyTorch (through the PyTorch extension) and the engine's other requirements,
        asking first, then check that the installed torch and NumPy can run the engine. Called on
        Register, never at import or construction. Raises RuntimeError with one line on failure."""
        try:
            import PyTorchUtils
        except ImportError as error:
            raise RuntimeError(_("AVSM Registration needs the PyTorch extension: install it with the "
                                 "Extensions Manager and restart Slicer.")) from error
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if not torchLogic.torchInstalled():
            if not slicer.util.confirmOkCancelDisplay(_(
                    "AVSM Registration needs PyTorch, which is not installed yet. Install it now? "
                    "This downloads about 200 MB (CPU) to 2.5 GB (CUDA) and may take several minutes.")):
                raise RuntimeError(_("PyTorch is required; registration was not started."))
            try:
                installed = torchLogic.installTorch(askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT)
            except Exception as error:
                raise RuntimeError(_("PyTorch could not be installed ({error}); see the PyTorch Utils module.").format(
                    error=str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__)) from error
            if installed is None or not torchLogic.torchInstalled():
                raise RuntimeError(_("PyTorch could not be installed; see the PyTorch Utils module."))
        problem = installed_problem()
        if problem:
            raise RuntimeError(problem)
        note = version_note(installed_version("torch"))
        if note and log:
            log(note)
        self._ensureEngineRequirements()

    @staticmethod
    def _ensureEngineRequirements() -> None:
        requirements = os.path.join(os.path.dirname(__file__), "requirements.txt")
        packaging = optional_import("slicer.packaging")  # Slicer 5.12+; must be imported explicitly
        if packaging is not None and hasattr(packaging, "pip_ensure"):
            packaging.pip_ensure(packaging.load_requirements(requirements),
                                 skip_packages=["torch", "SimpleITK", "numpy"], requester="AVSMRegistration")
            return
        missing = [package for module, package in (("tqdm", "tqdm"), ("PIL", "pillow")) if not _importable(module)]
        if missing:
            if not slicer.util.confirmOkCancelDisplay(_("AVSM Registration needs these Python packages: {names}. "
                                                        "Install them now?").format(names=", ".join(missing))):
                raise RuntimeError(_("Required Python packages are missing; registration was not started."))
            slicer.util.pip_install(missing)


def _importable(name: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(name) is not None


class AVSMRegistrationTest(ScriptedLoadableModuleTest):
    """Self-test on the pair bundled with the engine (avsm/sample_data: two T1 brains at 2 mm with brain
    masks), so it needs no download. The input checks always run; the registration runs, as the panel
    runs it (background PythonSlicer process polled by the RunController), when PyTorch is installed."""

    SAMPLE_DATA = os.path.join(os.path.dirname(__file__), "avsm", "sample_data")

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_inputChecks()
        self.setUp()
        self.test_registration()

    def _loadSampleData(self):
        def path(name):
            return os.path.join(self.SAMPLE_DATA, name)
        fixed = slicer.util.loadVolume(path("fixed_t1_2mm.nii.gz"))
        moving = slicer.util.loadVolume(path("moving_t1_2mm.nii.gz"))
        fixedMask = slicer.util.loadLabelVolume(path("fixed_brainmask_2mm.nii.gz"))
        movingMask = slicer.util.loadLabelVolume(path("moving_brainmask_2mm.nii.gz"))
        return fixed, moving, fixedMask, movingMask

    def test_inputChecks(self):
        self.delayDisplay("Input checks")
        fixed, moving, fixedMask, movingMask = self._loadSampleData()
        logic = AVSMRegistrationLogic()
        self.assertIsNone(input_problem(fixed, moving, movingMask, fixedMask))
        self.assertIsNone(input_problem(fixed, moving, fixedMask=fixedMask, movingMask=movingMask))
        self.assertIn("same node", input_problem(fixed, fixed))
        self.assertIn("is a label map", input_problem(fixedMask, moving))
        self.assertIs(default_fixed_volume(slicer.mrmlScene), fixed)
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
        with self.assertRaises(ValueError):
            register_volumes(fixed, fixed, method="affine")
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore)
        parameters = logic.getParameterNode()
        parameters.fixedVolume, parameters.movingVolume = fixed, moving
        self.assertIsNone(logic.inputProblem(parameters))
        self.delayDisplay("Input checks passed")

    def test_registration(self):
        import time

        if os.environ.get("AVSM_SELFTEST_SKIP_ENGINE") or not _importable("torch"):
            self.delayDisplay("PyTorch is not installed: registration part of the self-test skipped")
            return
        self.delayDisplay("vSVF registration of the bundled sample pair in a background process")
        fixed, moving, fixedMask, movingMask = self._loadSampleData()
        options = RegistrationOptions(method="vsvf-opt", device="cpu", affine_iterations=20, vsvf_iterations=20,
                                      working_spacing=4.0)
        errors = []
        run = RunController(report_error=errors.append)
        started = run.start(lambda: RegistrationJob(fixed, moving, movingMask, fixedMask, options,
                                                    tempRoot=slicer.app.temporaryPath,
                                                    python=shutil.which("PythonSlicer") or None))
        self.assertTrue(started, errors)
        deadline = time.monotonic() + 600
        while run.poll():
            self.assertLess(time.monotonic(), deadline, "registration took more than 10 minutes")
            slicer.app.processEvents()
            time.sleep(0.2)
        self.assertEqual(run.state, RunState.FINISHED, errors)
        nodes = run.nodes
        self.assertEqual(len(nodes.nodes()), 6)  # transform, affine, warped, warped labels, det(J), folds
        for volume in (nodes.warped, nodes.warpedLabels, nodes.jacobian, nodes.folds):
            self.assertEqual(volume.GetImageData().GetDimensions(), fixed.GetImageData().GetDimensions())
        display = nodes.transform.GetDisplayNode()
        self.assertEqual(display.GetVisualizationMode(), slicer.vtkMRMLTransformDisplayNode.VIS_MODE_GRID)
        self.assertIs(nodes.transform.GetNodeReference(nodes.transform.GetFixedNodeReferenceRole()), fixed)
        self.assertGreater(nodes.report["dice_mean"], 0.9)  # brain masks: 0.970 with these settings
        self.assertEqual(nodes.report["fold_count"], 0)
        self.delayDisplay(nodes.summary)

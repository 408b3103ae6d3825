"""The module's Logic wired to the scene bridge, imported with stand-ins for the Qt-only parts of
Slicer (qt, ScriptedLoadableModule, parameterNodeWrapper, i18n) that slicer-core lacks."""
from __future__ import annotations

import dataclasses
import importlib.util
import sys
import types
from types import SimpleNamespace

import pytest
import slicer

from AVSMRegistrationLib import RegistrationInputError
from slicer_test_support import MODULE_DIR, scene_state


class _Base:
    def __init__(self, parent=None):
        self.parent = parent

    def getParameterNode(self):
        return None


def _identity(cls=None, *args, **kwargs):
    return cls if cls is not None else (lambda c: c)


@pytest.fixture
def module(monkeypatch, tmp_path):
    stubs = {
        "qt": types.SimpleNamespace(QTimer=object),
        "slicer.ScriptedLoadableModule": SimpleNamespace(
            ScriptedLoadableModule=_Base, ScriptedLoadableModuleWidget=_Base,
            ScriptedLoadableModuleLogic=_Base, ScriptedLoadableModuleTest=_Base),
        "slicer.parameterNodeWrapper": SimpleNamespace(
            parameterNodeWrapper=_identity, WithinRange=lambda *a: None),
        "slicer.i18n": SimpleNamespace(tr=lambda text: text, translate=lambda context, text: text),
    }
    for name, stub in stubs.items():
        monkeypatch.setitem(sys.modules, name, stub)
    monkeypatch.setattr(slicer, "app", SimpleNamespace(temporaryPath=str(tmp_path)), raising=False)
    spec = importlib.util.spec_from_file_location("AVSMRegistration", MODULE_DIR / "AVSMRegistration.py")
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def panel_state(module, nodes, **changes):
    state = dict(fixedVolume=nodes["fixed"], movingVolume=nodes["moving"], movingLabels=None, fixedLabels=None,
                 fixedMask=None, movingMask=None, initialTransform=None,
                 method=module.MethodChoice["vsvf-opt"], contrast=module.ContrastChoice["auto"], affineSteps=0,
                 vsvfSteps=0, instanceOptIterations=0,
                 affineRefine=-1,
                 device=module.DeviceChoice["cpu"],
                 modelPath="", showGrid=True, keepIntermediateFiles=False)
    for key in ("Transform", "Affine", "Warped", "WarpedLabels", "Jacobian", "Folds", "Inverse"):
        state[f"create{key}"], state[f"output{key}"] = key != "Inverse", None
    state.update(changes)
    return SimpleNamespace(**state)


def test_module_metadata_at_run_time(module):
    parent = SimpleNamespace()
    module.AVSMRegistration(parent)
    assert parent.title == "AVSM Registration"
    assert parent.categories == ["Registration"]
    assert parent.contributors and all(parent.contributors)
    assert len(parent.acknowledgementText) > 50 and len(parent.helpText) > 50


def test_panel_defaults_map_to_engine_defaults(module, nodes):
    logic = module.AVSMRegistrationLogic()
    options = logic._options(panel_state(module, nodes))
    assert options.engine_kwargs() == {"method": "vsvf-opt", "device": "cpu"}  # 0 steps -> engine default
    options = logic._options(panel_state(module, nodes, method=module.MethodChoice["avsm"], affineSteps=7,
                                         modelPath=" /models/m.pt "))
    assert options.network_affine_steps == 7 and options.affine_iterations is None and options.model == "/models/m.pt"
    assert logic._options(panel_state(module, nodes, method=module.MethodChoice["default"])).engine_kwargs() == {
        "preset": "default", "device": "cpu"}


def test_affine_refinement_box_maps_to_the_engine_only_for_networks(module, nodes):
    """-1 ('default') leaves the engine's default, 0 turns the refinement off, and the box is ignored for
    the methods without a network (the engine refuses the option there)."""
    logic = module.AVSMRegistrationLogic()
    avsm = module.MethodChoice["avsm"]
    assert "affine_refine" not in logic._options(panel_state(module, nodes, method=avsm)).engine_kwargs()
    off = logic._options(panel_state(module, nodes, method=avsm, affineRefine=0))
    assert off.engine_kwargs()["affine_refine"] == 0
    assert off.validated().command_line()[-2:] == ["--affine-refine", "0"]
    ignored = logic._options(panel_state(module, nodes, affineRefine=40))  # vsvf-opt
    assert ignored.affine_refine is None and ignored.validated() == ignored


def test_output_checkboxes_and_selectors_map_to_requests(module, nodes, scene):
    logic = module.AVSMRegistrationLogic()
    existing = scene.AddNewNodeByClass("vtkMRMLTransformNode", "mine")
    requests = logic._outputs(panel_state(module, nodes, outputTransform=existing, createFolds=False))
    assert requests["transform"] is existing
    assert requests["folds"] is False
    assert requests["warped"] is True


def test_disabled_register_button_says_why(module, nodes):
    logic = module.AVSMRegistrationLogic()
    assert logic.inputProblem(panel_state(module, nodes)) is None
    assert "same node" in logic.inputProblem(panel_state(module, nodes, movingVolume=nodes["fixed"]))
    assert logic.inputProblem(panel_state(module, nodes, movingVolume=None)) == "Select a moving volume."
    none = {f"create{k}": False for k in ("Transform", "Affine", "Warped", "WarpedLabels", "Jacobian", "Folds",
                                            "Inverse")}
    assert logic.inputProblem(panel_state(module, nodes, **none)) == "Select at least one output."


def test_start_registration_runs_in_the_background_and_cancels(module, nodes, scene, tmp_path):
    pytest.importorskip("avsm", reason="the avsm engine (torch) is not importable")
    before = scene_state(scene)
    logic = module.AVSMRegistrationLogic()
    logic.ensureDependencies = lambda log=None: None  # PyTorch Utils is a Slicer extension; torch is here
    job = logic.startRegistration(panel_state(module, nodes))
    assert not job.running  # the panel's RunController starts it
    job.start()
    assert job.running
    job.cancel()
    assert not job.running
    assert scene_state(scene) == before
    assert list(tmp_path.iterdir()) == []


def test_the_panel_masks_and_initial_transform_go_to_the_job_and_the_checks(module, nodes, scene):
    logic = module.AVSMRegistrationLogic()
    logic.ensureDependencies = lambda log=None: None
    initial = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "landmarks")
    state = panel_state(module, nodes, fixedMask=nodes["fixedLabels"], movingMask=nodes["movingLabels"],
                        initialTransform=initial)
    assert logic.inputProblem(state) is None
    job = logic.startRegistration(state)
    assert (job.fixedMask, job.movingMask, job.initialTransform) == (nodes["fixedLabels"], nodes["movingLabels"], initial)
    bspline = scene.AddNewNodeByClass("vtkMRMLBSplineTransformNode", "spline")
    bspline.SetAndObserveTransformFromParent(slicer.vtkOrientedBSplineTransform())
    assert "The initial transform 'spline' is not linear" in logic.inputProblem(
        panel_state(module, nodes, initialTransform=bspline))


def test_combo_boxes_show_labels_and_store_engine_names(module):
    assert [c.value for c in module.MethodChoice] == ["fast", "default", "accurate",
                                                      "avsm", "voxelmorph", "vsvf-opt", "affine"]
    assert module.MethodChoice.label(module.MethodChoice["default"]) == "Default: AVSM network + instance optimisation"
    assert module.MethodChoice.label(module.MethodChoice["fast"]) == "Fast: AVSM network"
    assert module.MethodChoice.label(module.MethodChoice["accurate"]) == "Accurate: vSVF optimisation"
    assert module.MethodChoice.label(module.MethodChoice["vsvf-opt"]) == "Method: vSVF optimisation"
    assert [module.DeviceChoice.label(c) for c in module.DeviceChoice] == ["auto (GPU if available)", "CPU", "GPU (CUDA)"]


def test_the_choices_are_the_engines_presets_then_its_methods():
    from avsm.methods import METHODS, PRESETS

    from AVSMRegistrationLib.options import CHOICES

    assert [(c.preset, c.method) for c in CHOICES] == ([(name, None) for name in PRESETS]
                                                       + [(None, name) for name in METHODS])
    assert [c.name for c in CHOICES] == [*PRESETS, *METHODS]  # unique: the parameter node stores the name
    # a preset's description ends with its measured accuracy and time, when the engine records them
    assert [c.description for c in CHOICES] == ([p.description + (f" Measured: {p.measured}." if p.measured else "")
                                                 for p in PRESETS.values()]
                                                + [m.description for m in METHODS.values()])
    assert all(p.measured in c.description for p, c in zip(PRESETS.values(), CHOICES))
    assert [c.network for c in CHOICES] == ([METHODS[p.method].network for p in PRESETS.values()]
                                            + [m.network for m in METHODS.values()])


def test_the_default_choice_is_the_engines_default_preset(module):
    from avsm.methods import DEFAULT_PRESET

    from AVSMRegistrationLib import DEFAULT_CHOICE, RegistrationOptions

    assert DEFAULT_CHOICE == DEFAULT_PRESET
    assert module.AVSMRegistrationParameterNode.method is module.MethodChoice[DEFAULT_PRESET]
    assert RegistrationOptions().validated().preset == DEFAULT_PRESET


def test_a_presets_measured_figures_join_its_description(monkeypatch):
    """A preset that carries measured figures shows them under the combo box; one without shows none."""
    from avsm.methods import PRESETS

    from AVSMRegistrationLib import options

    def with_measured(preset, text):
        copy = dataclasses.replace(preset)
        object.__setattr__(copy, "measured", text)
        return copy

    monkeypatch.setattr(options, "PRESETS", {"fast": with_measured(PRESETS["fast"], "held-out Dice 0.57, 7 s"),
                                             "default": with_measured(PRESETS["default"], "")})
    assert options._preset_choice("fast").description == PRESETS["fast"].description + " Measured: held-out Dice 0.57, 7 s."
    assert options._preset_choice("default").description == PRESETS["default"].description


def test_the_summary_names_the_preset_or_the_method():
    from AVSMRegistrationLib.summary import summary_text

    report = {"method": "avsm", "preset": "fast", "device": "cpu"}
    assert summary_text(report, 2.0, "m", "f") == "Preset 'fast' (AVSM network): 'm' -> 'f' in 2.0 s on cpu."
    report = {"method": "vsvf-opt", "preset": None, "device": "cpu"}
    assert summary_text(report, 2.0, "m", "f") == "vSVF optimisation: 'm' -> 'f' in 2.0 s on cpu."


def test_the_summary_says_when_the_run_started_from_the_initial_transform_and_used_masks():
    from AVSMRegistrationLib.summary import summary_text

    report = {"method": "affine", "device": "cpu", "initial_source": "initial transform", "masks": ["fixed", "moving"]}
    assert summary_text(report, 1.0, "m", "f") == ("Affine optimisation: 'm' -> 'f' in 1.0 s on cpu; started from the "
                                                   "initial transform; compared inside the fixed and moving masks.")
    report = {"method": "affine", "device": "cpu", "initial_source": "centre of mass", "masks": ["moving"]}
    assert summary_text(report, 1.0, "m", "f") == ("Affine optimisation: 'm' -> 'f' in 1.0 s on cpu; "
                                                   "compared inside the moving mask.")


def test_network_boxes_apply_only_when_the_chosen_method_has_a_network(module, nodes):
    logic = module.AVSMRegistrationLogic()
    boxes = dict(instanceOptIterations=12, affineRefine=5, modelPath="/models/m.pt")
    accurate = logic._options(panel_state(module, nodes, method=module.MethodChoice["accurate"], **boxes))
    assert accurate.engine_kwargs() == {"preset": "accurate", "device": "cpu"}
    default = logic._options(panel_state(module, nodes, method=module.MethodChoice["default"], **boxes))
    assert default.engine_kwargs() == {"preset": "default", "device": "cpu", "model": "/models/m.pt",
                                       "instance_opt": 12, "affine_refine": 5}


def test_command_line_of_a_preset_is_what_the_engine_parses():
    from avsm.cli import build_parser

    from AVSMRegistrationLib import RegistrationOptions

    options = RegistrationOptions(preset="accurate", device="cpu", vsvf_iterations=20, working_spacing=4.0).validated()
    assert options.command_line() == ["--preset", "accurate", "--device", "cpu", "--vsvf-iterations", "20",
                                      "--working-spacing", "4.0"]
    parsed = build_parser().parse_args(["register", "fixed.nii.gz", "moving.nii.gz", "-o", "out", *options.command_line()])
    assert (parsed.preset, parsed.method, parsed.vsvf_iterations, parsed.working_spacing) == ("accurate", None, 20, 4.0)
    assert RegistrationOptions(method="affine").validated().command_line() == ["--method", "affine", "--device", "auto"]


def test_the_console_takes_a_preset_or_a_method(module, nodes, tmp_path):
    """logic.register with preset= or method= reaches the engine's check (the bridge refuses the pair)."""
    logic = module.AVSMRegistrationLogic()
    logic.ensureDependencies = lambda log=None: None  # PyTorch Utils is a Slicer extension; torch is here
    with pytest.raises(RegistrationInputError, match="^preset 'accurate' runs method 'vsvf-opt', not 'affine'"):
        logic.register(nodes["fixed"], nodes["moving"], preset="accurate", method="affine")
    with pytest.raises(RegistrationInputError, match="^unknown preset 'slow'"):
        logic.register(nodes["fixed"], nodes["moving"], preset="slow")
    assert list(tmp_path.iterdir()) == []


class RecordingTimer:
    """The panel's QTimer as far as the widget uses it."""

    def __init__(self):
        self.active, self.stops = False, 0

    def start(self):
        self.active = True

    def stop(self):
        self.active, self.stops = False, self.stops + 1


def widget_with_run(module, nodes, errors, **changes):
    """A panel widget with plain stand-ins for its Qt widgets and timer, and the real run controller."""
    from AVSMRegistrationLib.run_state import RunController

    widget = module.AVSMRegistrationWidget()
    widget.ui = SimpleNamespace(registerButton=SimpleNamespace(text="", enabled=False, toolTip=""),
                                inputStatusLabel=SimpleNamespace(text=""),
                                progressBar=SimpleNamespace(value=0, format=""))
    widget.logic = module.AVSMRegistrationLogic()
    widget.logic.ensureDependencies = lambda log=None: None  # PyTorch Utils is a Slicer extension; torch is here
    widget._parameterNode = panel_state(module, nodes, **changes)
    widget._timer = RecordingTimer()
    widget.run = RunController(report_error=errors.append)
    return widget


def test_a_failed_run_shows_one_error_and_stops_the_timer(module, nodes, scene):
    import time

    errors = []
    widget = widget_with_run(module, nodes, errors, method=module.MethodChoice["avsm"],
                             modelPath="avsm-brain")  # no bundled model of that name: the engine refuses it
    before = scene_state(scene)
    assert widget.run.start(lambda: widget.logic.startRegistration(widget._parameterNode))
    widget._timer.start()
    deadline = time.monotonic() + 120
    while widget._timer.active and time.monotonic() < deadline:
        widget.onTimer()
        time.sleep(0.05)
    assert not widget._timer.active and widget._timer.stops == 1
    assert len(errors) == 1 and "unknown model 'avsm-brain'" in errors[0]
    assert widget.ui.registerButton.text == "Register" and widget.ui.registerButton.enabled
    widget.onTimer()  # a tick already queued changes nothing
    assert len(errors) == 1
    assert scene_state(scene) == before


def test_cleanup_during_a_run_stops_the_timer_and_the_engine(module, nodes, scene):
    errors = []
    widget = widget_with_run(module, nodes, errors, vsvfSteps=500)
    before = scene_state(scene)
    assert widget.run.start(lambda: widget.logic.startRegistration(widget._parameterNode))
    process = widget.run.job.process.process
    widget._timer.start()
    widget.cleanup()
    assert not widget._timer.active and process.poll() is not None
    assert not widget.run.active and errors == []
    assert scene_state(scene) == before


class TorchUtilsLogic:
    """PyTorch Utils (another Slicer extension) with torch absent and a chosen installTorch outcome."""

    outcome = None

    def torchInstalled(self):
        return False

    def installTorch(self, askConfirmation, torchVersionRequirement):
        self.requested = torchVersionRequirement
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


@pytest.fixture
def torch_utils(monkeypatch):
    monkeypatch.setitem(sys.modules, "PyTorchUtils", SimpleNamespace(PyTorchUtilsLogic=TorchUtilsLogic))
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda *args, **kwargs: True)
    return TorchUtilsLogic


def test_an_install_that_raises_becomes_one_line(module, torch_utils, monkeypatch):
    monkeypatch.setattr(torch_utils, "outcome", OSError("pip failed\nConnectionError: no route to host"))
    with pytest.raises(RuntimeError) as error:
        module.AVSMRegistrationLogic().ensureDependencies()
    assert str(error.value) == ("PyTorch could not be installed (ConnectionError: no route to host); "
                                "see the PyTorch Utils module.")


def test_an_install_that_returns_nothing_is_refused(module, torch_utils):
    with pytest.raises(RuntimeError, match="^PyTorch could not be installed; see the PyTorch Utils module.$"):
        module.AVSMRegistrationLogic().ensureDependencies()


def test_torch_is_installed_in_the_tested_range(module, torch_utils, monkeypatch):
    from AVSMRegistrationLib.dependencies import TORCH_REQUIREMENT

    asked = []
    monkeypatch.setattr(torch_utils, "installTorch",
                        lambda self, askConfirmation, torchVersionRequirement: asked.append(torchVersionRequirement))
    with pytest.raises(RuntimeError):
        module.AVSMRegistrationLogic().ensureDependencies()
    assert asked == [TORCH_REQUIREMENT] == [">=2.3,<2.14"]


def test_without_the_pytorch_extension_the_message_says_what_to_install(module, monkeypatch):
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)  # import fails
    with pytest.raises(RuntimeError, match="needs the PyTorch extension: install it with the Extensions Manager"):
        module.AVSMRegistrationLogic().ensureDependencies()


def test_the_self_tests_registration_runs_on_the_bundled_pair(module, scene, monkeypatch, tmp_path):
    """AVSMRegistrationTest.test_registration as Slicer runs it, with the sample files loaded through
    slicer-core instead of slicer.util.loadVolume (which needs the application)."""
    import unittest

    import SimpleITK as sitk

    from slicer_test_support import SAMPLE_DATA, add_volume

    class SelfTest(module.AVSMRegistrationTest, unittest.TestCase):
        def __init__(self):
            unittest.TestCase.__init__(self, "test_registration")

        def delayDisplay(self, message):
            pass

        def _loadSampleData(self):
            def read(name):
                return sitk.ReadImage(str(SAMPLE_DATA / name))
            return (add_volume(scene, read("fixed_t1_2mm.nii.gz"), "fixed"),
                    add_volume(scene, read("moving_t1_2mm.nii.gz"), "moving"),
                    add_volume(scene, read("fixed_brainmask_2mm.nii.gz"), "fixed mask", "vtkMRMLLabelMapVolumeNode"),
                    add_volume(scene, read("moving_brainmask_2mm.nii.gz"), "moving mask", "vtkMRMLLabelMapVolumeNode"))

    monkeypatch.setattr(slicer, "app", SimpleNamespace(temporaryPath=str(tmp_path), processEvents=lambda: None),
                        raising=False)
    monkeypatch.delenv("AVSM_SELFTEST_SKIP_ENGINE", raising=False)
    SelfTest().test_registration()
    assert list(tmp_path.iterdir()) == []


def test_the_similarity_is_checked_and_reaches_the_engine_and_its_command_line():
    from avsm.cli import build_parser
    from avsm.methods import SIMILARITY_CHOICES

    from AVSMRegistrationLib import RegistrationOptions

    assert RegistrationOptions().similarity is None  # the engine's default
    assert "similarity" not in RegistrationOptions(method="affine").validated().engine_kwargs()
    options = RegistrationOptions(method="affine", device="cpu", similarity="mi").validated()
    assert options.engine_kwargs() == {"method": "affine", "device": "cpu", "similarity": "mi"}
    assert options.command_line()[-2:] == ["--similarity", "mi"]
    parsed = build_parser().parse_args(["register", "fixed.nii.gz", "moving.nii.gz", "-o", "out", *options.command_line()])
    assert (parsed.method, parsed.similarity) == ("affine", "mi")
    for name in SIMILARITY_CHOICES:
        assert RegistrationOptions(similarity=name).validated().similarity == name
    with pytest.raises(RegistrationInputError) as refused:
        RegistrationOptions(method="affine", similarity="ncc").validated()
    assert str(refused.value) == "Unknown similarity 'ncc'; choose one of: auto, lncc, mi."
    assert "\n" not in str(refused.value)


def test_the_contrast_box_defaults_to_detection_and_maps_to_the_similarity(module, nodes):
    from avsm.methods import DEFAULT_SIMILARITY, SIMILARITY_CHOICES

    assert [c.value for c in module.ContrastChoice] == list(SIMILARITY_CHOICES)
    assert [module.ContrastChoice.label(c) for c in module.ContrastChoice] == [
        "Detect from the images", "Same contrast (local correlation)",
        "Different contrasts, e.g. T1 and T2 (mutual information)"]
    assert module.AVSMRegistrationParameterNode.contrast is module.ContrastChoice[DEFAULT_SIMILARITY]
    assert DEFAULT_SIMILARITY == "auto"
    logic = module.AVSMRegistrationLogic()
    detect = logic._options(panel_state(module, nodes, contrast=module.ContrastChoice["auto"]))
    assert detect.similarity is None and "similarity" not in detect.engine_kwargs()  # the engine's default
    same = logic._options(panel_state(module, nodes, contrast=module.ContrastChoice["lncc"]))
    assert same.engine_kwargs() == {"method": "vsvf-opt", "device": "cpu", "similarity": "lncc"}
    different = logic._options(panel_state(module, nodes, contrast=module.ContrastChoice["mi"]))
    assert different.engine_kwargs() == {"method": "vsvf-opt", "device": "cpu", "similarity": "mi"}


def test_the_summary_says_when_the_affine_stage_used_mutual_information():
    from AVSMRegistrationLib.summary import summary_text

    report = {"method": "affine", "device": "cpu", "affine_similarity": "mi"}
    assert summary_text(report, 1.0, "m", "f") == ("Affine optimisation: 'm' -> 'f' in 1.0 s on cpu; "
                                                   "affine by mutual information.")
    report["affine_similarity"] = "lncc"
    assert "mutual information" not in summary_text(report, 1.0, "m", "f")
    fast = {"method": "avsm", "preset": "fast", "device": "cpu", "affine_similarity": "mi",
            "network": {"networks_used": False, "instance_opt": 0}}
    assert summary_text(fast, 1.0, "m", "f") == (
        "Preset 'fast' (AVSM network): 'm' -> 'f' in 1.0 s on cpu; affine by mutual information; the affine "
        "optimisation in place of the networks across contrasts.")
    fast["similarity"] = {"requested": "auto", "contrast_agreement": 0.41, "same_contrast": False, "used": "mi"}
    assert summary_text(fast, 1.0, "m", "f") == (
        "Preset 'fast' (AVSM network): 'm' -> 'f' in 1.0 s on cpu; contrasts differ (sign agreement 0.41): mutual "
        "information; the affine optimisation in place of the networks across contrasts.")


def test_the_console_runs_the_affine_stage_with_mutual_information(module, nodes, scene, tmp_path):
    """One tiny real run: logic.register -> register_volumes -> avsm.register with similarity="mi"."""
    pytest.importorskip("torch", reason="the avsm engine needs torch")
    logic = module.AVSMRegistrationLogic()
    logic.ensureDependencies = lambda log=None: None  # PyTorch Utils is a Slicer extension; torch is here
    result = logic.register(nodes["fixed"], nodes["moving"], method="affine", device="cpu", affineIterations=2,
                            workingSpacing=6.0, similarity="mi", outputWarped=False, outputWarpedLabels=False,
                            outputJacobian=False, outputFolds=False)
    assert result.report["affine_similarity"] == "mi"
    assert "mutual information" in result.summary
    assert result.affine is not None
    assert list(tmp_path.iterdir()) == []


def test_each_advanced_box_sets_the_option_that_the_chosen_method_takes(module, nodes):
    """The two step boxes mean the networks' test-time steps or the optimisations' iterations, as the engine's
    declarations say; a box is ignored for a method that takes none of its options."""
    logic = module.AVSMRegistrationLogic()
    boxes = dict(affineSteps=7, vsvfSteps=3)
    expected = {"avsm": {"network_affine_steps": 7, "network_vsvf_steps": 3},
                "voxelmorph": {"network_affine_steps": 7},
                "vsvf-opt": {"affine_iterations": 7, "vsvf_iterations": 3},
                "affine": {"affine_iterations": 7}}
    for method, options in expected.items():
        kwargs = logic._options(panel_state(module, nodes, method=module.MethodChoice[method], **boxes)).engine_kwargs()
        assert kwargs == {"method": method, "device": "cpu", **options}


def test_the_boxes_cover_every_count_and_each_sets_at_most_one_option_per_method():
    from avsm.methods import METHODS, OPTIONS

    from AVSMRegistrationLib.options import METHOD_OPTIONS, PANEL_BOXES, box_option

    assert {name for names in PANEL_BOXES.values() for name in names} == set(METHOD_OPTIONS) - {"model"}
    for method in METHODS.values():
        for box, names in PANEL_BOXES.items():
            taken = [name for name in names if name in method.option_names]
            assert len(taken) <= 1 and box_option(box, method.name) == (OPTIONS[taken[0]] if taken else None)


def test_a_box_tooltip_is_the_declaration_of_its_option_and_an_unused_box_is_disabled():
    from avsm.methods import OPTIONS, option_help

    from AVSMRegistrationLib import box_state

    enabled, tooltip = box_state("affineSteps", "accurate")  # vsvf-opt
    assert enabled and tooltip.startswith(option_help(OPTIONS["affine_iterations"]))
    enabled, tooltip = box_state("affineSteps", "fast")  # the AVSM network
    assert enabled and tooltip.startswith(option_help(OPTIONS["network_affine_steps"]))
    assert box_state("vsvfSteps", "voxelmorph") == (False, "Not used by VoxelMorph network.")
    assert box_state("instanceOptIterations", "affine") == (False, "Not used by Affine optimisation.")


def test_the_run_options_hold_every_method_option_the_command_line_takes():
    from AVSMRegistrationLib import RegistrationOptions
    from AVSMRegistrationLib.options import METHOD_OPTIONS

    fields = {f.name for f in dataclasses.fields(RegistrationOptions)}
    assert set(METHOD_OPTIONS) <= fields
    assert fields - set(METHOD_OPTIONS) == {"preset", "method", "device", "working_spacing", "similarity"}

"""The Slicer module's files hold together: the .ui has every widget the code names and every
parameter has a widget, CMake ships every file the module imports or loads, the metadata is
filled in and consistent. Read as text/XML/AST: no Slicer application needed."""
from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from slicer_test_support import s4ext_entries

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "AVSMRegistration"
SOURCE = (MODULE / "AVSMRegistration.py").read_text()
TREE = ast.parse(SOURCE)
UI = ElementTree.parse(MODULE / "Resources" / "UI" / "AVSMRegistration.ui").getroot()


def ui_widgets() -> dict[str, ElementTree.Element]:
    return {w.get("name"): w for w in UI.iter("widget")}


def parameter_names_in_ui() -> dict[str, str]:
    names = {}
    for widget in UI.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                names[prop.find("string").text] = widget.get("name")
    return names


def parameter_node_fields() -> list[str]:
    for node in TREE.body:
        if isinstance(node, ast.ClassDef) and node.name == "AVSMRegistrationParameterNode":
            return [item.target.id for item in node.body if isinstance(item, ast.AnnAssign)]
    raise AssertionError("no AVSMRegistrationParameterNode class")


def cmake_entries(path: Path) -> str:
    return path.read_text().replace("${MODULE_NAME}", "AVSMRegistration")


def test_ui_root_is_a_qmrmlwidget():
    assert UI.find("widget").get("class") == "qMRMLWidget"


def test_ui_holds_every_widget_the_code_names():
    used = set(re.findall(r"self\.ui\.(\w+)", SOURCE))
    assert used, "the widget uses no ui element?"
    missing = used - set(ui_widgets())
    assert not missing, f"named in AVSMRegistration.py but absent from the .ui: {sorted(missing)}"


BOUND_BY_HAND = {"modelPath": "modelPathLineEdit"}
"""Parameters the widget syncs itself: the path widget's connector shows an empty Path as '.'."""


def test_every_parameter_has_exactly_one_widget_and_back():
    fields = parameter_node_fields()
    bound = parameter_names_in_ui()
    assert sorted([*bound, *BOUND_BY_HAND]) == sorted(fields)
    for parameter, widget in BOUND_BY_HAND.items():
        assert widget in ui_widgets() and f"self.ui.{widget}" in SOURCE
        assert f"p.{parameter}" in SOURCE and f"self._parameterNode.{parameter} = " in SOURCE


def test_model_path_is_a_string_so_an_empty_path_shows_empty():
    assert re.search(r'^\s+modelPath: str = ""', SOURCE, re.MULTILINE)
    assert "Path()" not in SOURCE


def test_transform_output_selectors_offer_existing_transform_nodes_of_every_kind():
    """vtkMRMLLinearTransformNode, vtkMRMLGridTransformNode, ... are child classes of the listed type."""
    for name in ("outputTransformSelector", "outputAffineSelector", "outputInverseSelector"):
        widget = ui_widgets()[name]
        assert [t.text for t in widget.find("property[@name='nodeTypes']/stringlist")] == ["vtkMRMLTransformNode"]
        assert widget.find("property[@name='showChildNodeTypes']/bool").text == "true", name


def test_intensity_selectors_hide_label_maps():
    for name in ("fixedVolumeSelector", "movingVolumeSelector", "outputWarpedSelector", "outputJacobianSelector"):
        widget = ui_widgets()[name]
        assert [t.text for t in widget.find("property[@name='nodeTypes']/stringlist")] == ["vtkMRMLScalarVolumeNode"]
        assert widget.find("property[@name='showChildNodeTypes']/bool").text == "false", name


def test_method_description_follows_the_parameter_node_not_the_combo_box_signal():
    """A slot on currentIndexChanged runs before the parameter node is updated and reads the old method."""
    assert "currentIndexChanged" not in SOURCE
    handler = next(n for n in ast.walk(TREE) if isinstance(n, ast.FunctionDef) and n.name == "onParameterNodeModified")
    assert "methodDescriptionLabel" in ast.unparse(handler)


def test_node_selectors_follow_the_scene():
    connected = {c.find("receiver").text for c in UI.iter("connection")
                 if c.find("signal").text == "mrmlSceneChanged(vtkMRMLScene*)"}
    selectors = {name for name, w in ui_widgets().items() if w.get("class") == "qMRMLNodeComboBox"}
    assert selectors == connected


def test_panel_sections_and_advanced_collapsed():
    buttons = {name: w for name, w in ui_widgets().items() if w.get("class") == "ctkCollapsibleButton"}
    titles = {w.find("property[@name='text']/string").text for w in buttons.values()}
    assert titles == {"Inputs", "Method", "Advanced", "Outputs"}
    advanced = buttons["advancedCollapsibleButton"]
    assert advanced.find("property[@name='collapsed']/bool").text == "true"


def test_outputs_default_to_create_new_and_grid_shown():
    widgets = ui_widgets()
    for key in ("Transform", "Affine", "Warped", "WarpedLabels", "Jacobian", "Folds", "Inverse"):
        expected = "false" if key == "Inverse" else "true"
        assert widgets[f"create{key}CheckBox"].find("property[@name='checked']/bool").text == expected
        assert widgets[f"output{key}Selector"].find("property[@name='noneDisplay']/string").text == "Create new"
    assert widgets["keepIntermediateFilesCheckBox"].find("property[@name='checked']/bool").text == "false"
    assert re.search(r"createInverse: bool = False", SOURCE) and re.search(r"keepIntermediateFiles: bool = False", SOURCE)
    assert widgets["showGridCheckBox"].find("property[@name='checked']/bool").text == "true"
    assert re.search(r"createTransform: bool = True", SOURCE) and re.search(r"showGrid: bool = True", SOURCE)


def test_module_cmake_lists_every_shipped_python_file():
    cmake = cmake_entries(MODULE / "CMakeLists.txt")
    listed = {entry for entry in re.findall(r"^\s+(\S+\.py)\s*$", cmake, re.MULTILINE) if "*" not in entry}
    shipped = {"AVSMRegistration.py"} | {str(p.relative_to(MODULE)) for p in (MODULE / "AVSMRegistrationLib").glob("*.py")}
    assert shipped == listed
    assert re.search(r"GLOB_RECURSE AVSM_ENGINE_SCRIPTS .*\n\s+avsm/\*\.py", cmake), "engine package not shipped"


def test_module_cmake_lists_every_loaded_resource():
    cmake = cmake_entries(MODULE / "CMakeLists.txt")
    loaded = set(re.findall(r'resourcePath\("([^"]+)"\)', SOURCE))
    assert loaded == {"UI/AVSMRegistration.ui"}
    for resource in ("Resources/UI/AVSMRegistration.ui", "Resources/Icons/AVSMRegistration.png", "requirements.txt"):
        assert re.search(rf"^\s+{re.escape(resource)}\s*$", cmake, re.MULTILINE), resource
        assert (MODULE / resource).is_file(), resource
    assert '"requirements.txt"' in SOURCE  # read by ensureDependencies
    assert "avsm/bundled_models/*" in cmake and "avsm/sample_data/*" in cmake


def test_every_imported_helper_module_is_shipped():
    cmake = cmake_entries(MODULE / "CMakeLists.txt")
    lib = MODULE / "AVSMRegistrationLib"
    for path in [MODULE / "AVSMRegistration.py", *lib.glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("AVSMRegistrationLib."):
                    assert f"AVSMRegistrationLib/{node.module.split('.')[1]}.py" in cmake
                if node.level == 1 and path.parent == lib:
                    assert f"AVSMRegistrationLib/{node.module}.py" in cmake


def test_module_cmake_builds_with_generic_tests_and_registers_the_self_test():
    cmake = (MODULE / "CMakeLists.txt").read_text()
    assert "slicerMacroBuildScriptedModule(" in cmake and "WITH_GENERIC_TESTS" in cmake
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in cmake
    assert (MODULE / "Testing" / "CMakeLists.txt").is_file()
    classes = {n.name for n in TREE.body if isinstance(n, ast.ClassDef)}
    assert {"AVSMRegistration", "AVSMRegistrationWidget", "AVSMRegistrationLogic", "AVSMRegistrationTest"} <= classes
    assert '"avsm", "sample_data"' in SOURCE  # the self-test registers the bundled pair: no download


def _parent_assignments() -> dict[str, ast.AST]:
    found = {}
    for node in ast.walk(TREE):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute):
            target = node.targets[0]
            if isinstance(target.value, ast.Attribute) and target.value.attr == "parent":
                found[target.attr] = node.value
    return found


def _text_of(value: ast.AST) -> str:
    return " ".join(n.value for n in ast.walk(value) if isinstance(n, ast.Constant) and isinstance(n.value, str))


@pytest.mark.parametrize("attribute", ["title", "categories", "contributors", "helpText", "acknowledgementText"])
def test_module_metadata_is_filled_in(attribute):
    value = _parent_assignments()[attribute]
    assert len(_text_of(value).strip()) > 3, attribute


def test_category_is_registration():
    assert "Registration" in _text_of(_parent_assignments()["categories"])


def test_nothing_is_installed_at_import_or_construction():
    install_calls = {"pip_install", "pip_ensure", "installTorch"}
    allowed = {"ensureDependencies", "_ensureEngineRequirements"}  # the latter only called by the former
    for node in ast.walk(TREE):
        if isinstance(node, ast.FunctionDef) and node.name not in allowed:
            called = {n.func.attr for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
            assert not called & install_calls, node.name
    top_level_calls = [n for n in TREE.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
    assert not top_level_calls


def _cmake_metadata() -> dict[str, str]:
    text = (REPO / "CMakeLists.txt").read_text()
    return dict(re.findall(r'set\((EXTENSION_\w+) "([^"]*)"\)', text))


def test_extension_metadata_matches_thes4ext_entries():
    cmake, s4ext = _cmake_metadata(), s4ext_entries()
    assert cmake["EXTENSION_CATEGORY"] == s4ext["category"] == "Registration"
    assert cmake["EXTENSION_DEPENDS"] == s4ext["depends"] == "PyTorch"
    for cmake_key, s4ext_key in (("EXTENSION_HOMEPAGE", "homepage"), ("EXTENSION_CONTRIBUTORS", "contributors"),
                                 ("EXTENSION_DESCRIPTION", "description"), ("EXTENSION_ICONURL", "iconurl"),
                                 ("EXTENSION_SCREENSHOTURLS", "screenshoturls")):
        assert cmake[cmake_key] == s4ext[s4ext_key] and cmake[cmake_key], cmake_key
    text = (REPO / "CMakeLists.txt").read_text()
    assert "add_subdirectory(AVSMRegistration)" in text and "Slicer_EXTENSION_CPACK" in text


def test_icon_and_screenshot_urls_point_at_files_in_the_repository():
    cmake = _cmake_metadata()
    for url in [cmake["EXTENSION_ICONURL"], *cmake["EXTENSION_SCREENSHOTURLS"].split()]:
        relative = url.split("/main/", 1)[1]
        assert (REPO / relative).is_file(), relative


def test_icons_are_128_pixels_square():
    from PIL import Image
    for path in (REPO / "Resources" / "AVSMRegistration.png", MODULE / "Resources" / "Icons" / "AVSMRegistration.png"):
        assert Image.open(path).size == (128, 128)


def test_requirements_name_the_engine_dependencies():
    requirements = (MODULE / "requirements.txt").read_text()
    names = {re.split(r"[<>=! ]", line)[0] for line in requirements.splitlines() if line and not line.startswith("#")}
    assert {"torch", "tqdm", "pillow"} <= names


def _python_files():
    return sorted(MODULE.rglob("*.py"))


def _annotations(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            yield from (a.annotation for a in arguments if a.annotation is not None)
            if node.returns is not None:
                yield node.returns
        elif isinstance(node, ast.AnnAssign):
            yield node.annotation


def _uses_union_operator(expression) -> bool:
    return any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr) for n in ast.walk(expression))


@pytest.mark.parametrize("path", _python_files(), ids=lambda p: str(p.relative_to(MODULE)))
def test_every_shipped_file_imports_on_python_3_9(path):
    """Slicer 5.8 runs Python 3.9: no 3.10+ syntax, `X | Y` annotations only as strings (the
    __future__ import), no module-level import of tomllib (3.11)."""
    source = path.read_text()
    tree = ast.parse(source, feature_version=(3, 9))
    if any(_uses_union_operator(a) for a in _annotations(tree)):
        assert "from __future__ import annotations" in source
    for node in tree.body:
        if isinstance(node, ast.Import):
            assert "tomllib" not in {alias.name for alias in node.names}
        if isinstance(node, ast.ImportFrom):
            assert node.module != "tomllib"
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("isinstance", "issubclass"):
            assert not _uses_union_operator(node.args[1]), f"line {node.lineno}: isinstance with X | Y"
        if isinstance(node, ast.keyword) and node.arg in ("slots", "kw_only", "strict"):
            assert False, f"line {node.value.lineno}: {node.arg}= needs Python 3.10"


def test_parameter_node_annotations_are_evaluated_safely_on_python_3_9():
    """The parameter node wrapper evaluates these annotations at run time."""
    for node in TREE.body:
        if isinstance(node, ast.ClassDef) and node.name == "AVSMRegistrationParameterNode":
            for item in node.body:
                if isinstance(item, ast.AnnAssign):
                    assert not _uses_union_operator(item.annotation), item.target.id


def _method(name: str) -> ast.FunctionDef:
    return next(n for n in ast.walk(TREE) if isinstance(n, ast.FunctionDef) and n.name == name)


def test_the_timer_callback_shows_no_error_dialog_of_its_own():
    """tryWithErrorDisplay shows a dialog and re-raises: in a timer callback that is one dialog per tick.
    The run controller reports an error once; the callback only polls and stops the timer."""
    assert "tryWithErrorDisplay" not in SOURCE
    on_timer = ast.unparse(_method("onTimer"))
    assert "self.run.poll()" in on_timer and "self._timer.stop()" in on_timer


def test_cleanup_stops_the_timer_and_the_run():
    cleanup = ast.unparse(_method("cleanup"))
    assert "self._timer.stop()" in cleanup and "self.run.close()" in cleanup


def test_slicer_packaging_is_imported_explicitly_and_optional():
    """slicer.packaging exists from Slicer 5.12 and `import slicer` does not load it."""
    assert 'optional_import("slicer.packaging")' in SOURCE
    assert 'hasattr(slicer, "packaging")' not in SOURCE and "slicer.packaging." not in SOURCE

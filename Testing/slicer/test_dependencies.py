"""Which torch the module installs and whether the installed torch and NumPy can run the engine
(AVSMRegistrationLib.dependencies), read from package metadata without importing torch."""
from __future__ import annotations

import re

from AVSMRegistrationLib.dependencies import (TORCH_REQUIREMENT, installed_problem, installed_version,
                                              optional_import, version_note, version_problem, version_tuple)
from slicer_test_support import MODULE_DIR


def test_versions_are_read_as_numbers():
    assert version_tuple("2.13.0+cpu") == (2, 13, 0)
    assert version_tuple("2.10.0") > version_tuple("2.3.1")
    assert version_tuple("1.26.4") == (1, 26, 4) and version_tuple("2.0.0rc1") == (2, 0)


def test_torch_built_for_numpy_1_next_to_numpy_2_is_refused_with_the_fix():
    problem = version_problem("2.2.2", "2.1.0")
    assert problem == ("PyTorch 2.2.2 was built for NumPy 1 but Slicer's Python has NumPy 2.1.0: uninstall PyTorch "
                       "in the PyTorch Utils module, restart Slicer and register again (it then installs "
                       "torch>=2.3,<2.14).")


def test_old_torch_with_numpy_1_is_refused():
    assert version_problem("2.0.1", "1.26.4").startswith("PyTorch 2.0.1 is older than this module needs")


def test_missing_packages_are_named():
    assert version_problem(None, "2.1.0") == "PyTorch is not installed."
    assert version_problem("2.5.0", None) == "NumPy is not installed in Slicer's Python."


def test_the_slicer_releases_torch_range_runs():
    """5.8 (Python 3.9, NumPy 1.26) gets at most torch 2.8; 5.10-5.12 (Python 3.12, NumPy 2) the newest."""
    assert version_problem("2.8.0", "1.26.4") is None
    assert version_problem("2.3.0", "2.0.2") is None
    assert version_problem("2.13.0+cpu", "2.4.6") is None


def test_a_newer_torch_than_tested_runs_with_a_note():
    assert version_problem("2.14.0", "2.4.6") is None
    assert "newer than the versions this module was tested with" in version_note("2.14.0")
    assert version_note("2.13.0") is None and version_note(None) is None


def test_this_python_can_run_the_engine():
    assert installed_version("torch") and installed_version("numpy")
    assert installed_problem() is None


def test_requirements_file_asks_for_the_same_torch_range():
    lines = (MODULE_DIR / "requirements.txt").read_text().splitlines()
    torch = [line for line in lines if re.match(r"torch\b", line)]
    assert torch == [f"torch{TORCH_REQUIREMENT}"]


def test_optional_import_returns_none_for_what_is_missing():
    assert optional_import("no_such_module_anywhere") is None
    assert optional_import("json") is not None
    packaging = optional_import("slicer.packaging")  # Slicer 5.12+ only; slicer-core may or may not have it
    assert packaging is None or hasattr(packaging, "pip_ensure")

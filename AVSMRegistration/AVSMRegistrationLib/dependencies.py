"""Which PyTorch the module asks for, and whether the installed torch and NumPy can run the engine.

Read from package metadata (`importlib.metadata`), never by importing torch: a torch built against
NumPy 1 fails to import next to NumPy 2 ("_ARRAY_API not found"), and an imported torch cannot be
replaced without restarting Slicer.

Slicer 5.8 ships Python 3.9, Slicer 5.10-5.12 Python 3.12 with NumPy 2. torch 2.3 is the first
release built against NumPy 2 (so it runs next to both), torch 2.8 the last one with Python 3.9 wheels,
and 2.13 the newest release this engine is tested with.
"""
from __future__ import annotations

import re
from importlib import metadata

TORCH_MINIMUM = (2, 3)
TORCH_TESTED_BELOW = (2, 14)
TORCH_REQUIREMENT = ">=2.3,<2.14"
"""What PyTorch Utils installs (light-the-torch then picks the CUDA or CPU build for this machine)."""


def version_tuple(version: str) -> tuple[int, ...]:
    """(2, 13, 0) for '2.13.0+cpu'; the leading numeric parts only."""
    parts = []
    for piece in re.split(r"[.+-]", version):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def version_problem(torch_version: str | None, numpy_version: str | None) -> str | None:
    """Why these versions cannot run the engine, as one sentence; None when they can."""
    if torch_version is None:
        return "PyTorch is not installed."
    if numpy_version is None:
        return "NumPy is not installed in Slicer's Python."
    torch = version_tuple(torch_version)
    numpy = version_tuple(numpy_version)
    if torch[:2] < TORCH_MINIMUM:
        if numpy[:1] >= (2,):
            return (f"PyTorch {torch_version} was built for NumPy 1 but Slicer's Python has NumPy {numpy_version}: "
                    f"uninstall PyTorch in the PyTorch Utils module, restart Slicer and register again "
                    f"(it then installs torch{TORCH_REQUIREMENT}).")
        return (f"PyTorch {torch_version} is older than this module needs (torch{TORCH_REQUIREMENT}): "
                "uninstall it in the PyTorch Utils module, restart Slicer and register again.")
    return None


def version_note(torch_version: str | None) -> str | None:
    """A log line when torch is newer than the tested range (it may work: the run is not refused,
    since other extensions may share that torch)."""
    if torch_version is not None and version_tuple(torch_version)[:2] >= TORCH_TESTED_BELOW:
        return (f"PyTorch {torch_version} is newer than the versions this module was tested with "
                f"(torch{TORCH_REQUIREMENT}); if the run fails, install a tested version with PyTorch Utils.")
    return None


def installed_problem() -> str | None:
    """`version_problem` for the torch and NumPy installed in this Python."""
    return version_problem(installed_version("torch"), installed_version("numpy"))


def optional_import(name: str):
    """`import name` as a module, or None when it does not exist (e.g. `slicer.packaging` before
    Slicer 5.12, where it must also be imported explicitly: `import slicer` does not load it)."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        return None

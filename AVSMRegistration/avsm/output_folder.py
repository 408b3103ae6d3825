"""The output folder is checked before any work starts, so an unwritable one costs no registration."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import AVSMError


def check_writable(folder: str | os.PathLike) -> Path:
    """Raise `AVSMError` (one line) unless `folder` can be created and written; creates nothing.

    The nearest existing ancestor must be a folder in which a file can be made: a real probe,
    since permission bits say nothing about read-only file systems, and nothing at all for root.
    """
    folder = Path(folder)
    probe = folder.absolute()
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise AVSMError(f"output path is not a folder: {probe}")
    try:
        handle, name = tempfile.mkstemp(prefix=".avsm-write-test-", dir=probe)
    except OSError as error:
        raise AVSMError(f"output folder is not writable: {folder} ({error.strerror})") from None
    os.close(handle)
    os.remove(name)
    return folder

"""An unwritable output folder is refused before any registration starts (avsm.output_folder), by
`avsm register`, `avsm demo` and `avsm batch`: one line `avsm: error: ...`, exit code 2, nothing on
stdout (no progress event: no stage began), nothing created."""
import os
import tempfile
from pathlib import Path

import pytest

from avsm.cli import main
from avsm.errors import AVSMError
from avsm.output_folder import check_writable

from engine_fixtures import SAMPLE_DATA

FIXED = SAMPLE_DATA / "fixed_t1_2mm.nii.gz"
MOVING = SAMPLE_DATA / "moving_t1_2mm.nii.gz"


def read_only_folder() -> Path:
    """A folder no one may write in, root included (sysfs refuses new files)."""
    folder = Path("/sys")
    if not folder.is_dir():
        pytest.skip("no /sys here (not Linux): no folder that even root cannot write")
    try:
        handle, name = tempfile.mkstemp(dir=folder)
    except OSError:
        return folder
    os.close(handle)
    os.remove(name)
    pytest.skip("/sys is writable here")


def test_a_folder_that_can_be_made_passes_and_nothing_is_created(tmp_path):
    target = tmp_path / "a" / "b"
    assert check_writable(target) == target
    assert list(tmp_path.iterdir()) == []


def test_a_file_in_the_way_is_named():
    with tempfile.NamedTemporaryFile() as blocker:
        with pytest.raises(AVSMError, match=f"^output path is not a folder: {blocker.name}$"):
            check_writable(Path(blocker.name) / "out")


def test_a_read_only_folder_is_refused_even_for_root():
    target = read_only_folder() / "avsm-out"
    with pytest.raises(AVSMError, match=rf"^output folder is not writable: {target} \(Permission denied\)$"):
        check_writable(target)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permission bits")
def test_a_folder_without_write_permission_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(AVSMError, match="^output folder is not writable"):
        check_writable(locked / "out")


@pytest.mark.parametrize("command", [
    ["register", str(FIXED), str(MOVING), "-o", "{out}"],
    ["demo", "-o", "{out}"],
    ["batch", "{csv}", "-o", "{out}"],
])
def test_every_command_refuses_it_before_registering(command, capsys, tmp_path):
    out = read_only_folder() / "avsm-out"
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"fixed,moving\n{FIXED},{MOVING}\n")
    argv = [a.format(out=out, csv=pairs) for a in command] + ["--method", "affine", "--progress", "json"]
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.splitlines() == [f"avsm: error: output folder is not writable: {out} (Permission denied)"]
    assert captured.out == ""

"""avsm.checkpoints: the atomic writer, checkpoint files with their sha256 sidecar, and in-memory entries."""
from __future__ import annotations

import pytest
import torch

from avsm import AVSMError
from avsm.checkpoints import atomic_write, in_memory, load, save, sha256_of, sidecar_of, verify


def _payload() -> dict:
    return {"config": {"method": "avsm"}, "state_dict": {"w": torch.arange(4.0)}, "working_spacing_mm": 3.0}


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old\n")
    atomic_write(target, lambda temporary: temporary.write_text("new\n"))
    assert target.read_text() == "new\n" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_atomic_write_keeps_the_old_file_when_the_check_fails(tmp_path):
    target = tmp_path / "model.pt"
    target.write_text("old\n")

    def refuse(temporary):
        raise AVSMError("too large")

    with pytest.raises(AVSMError, match="too large"):
        atomic_write(target, lambda temporary: temporary.write_text("new\n"), refuse)
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_save_writes_a_sidecar_that_load_checks(tmp_path):
    path = save(_payload(), tmp_path / "step.pt")
    assert sidecar_of(path).read_text() == f"{sha256_of(path)}  step.pt\n"
    assert torch.equal(load(path, require_checksum=True)["state_dict"]["w"], torch.arange(4.0))


def test_a_changed_file_fails_its_checksum_before_it_is_unpickled(tmp_path):
    path = save(_payload(), tmp_path / "step.pt")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(AVSMError, match="fails its checksum"):
        load(path)


def test_a_file_without_checksum_is_refused_only_when_one_is_required(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(_payload(), path)
    assert verify(path) == sha256_of(path)
    with pytest.raises(AVSMError, match="has no checksum file model.pt.sha256"):
        load(path, require_checksum=True, what="checkpoint")


def test_load_names_the_missing_keys(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(AVSMError, match=r"not an avsm checkpoint \(missing: config, working_spacing_mm\)"):
        load(path)


def test_in_memory_entry_takes_method_and_spacing_from_the_weights():
    entry = in_memory("step_0000100", _payload())
    assert (entry.method, entry.working_spacing_mm, entry.path) == ("avsm", 3.0, None)
    with pytest.raises(AVSMError, match="missing: working_spacing_mm"):
        in_memory("bad", {"config": {"method": "avsm"}, "state_dict": {}})

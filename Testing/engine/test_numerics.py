"""Subnormal flushing is confined to the registration loops (avsm.numerics)."""
from __future__ import annotations

import torch

from avsm.numerics import flush_denormals

from engine_fixtures import SAMPLE_DATA

SUBNORMAL = 1e-40  # below float32's smallest normal number, 1.18e-38


def _survives() -> bool:
    return bool(torch.tensor([SUBNORMAL], dtype=torch.float32).mul(1.0).item() != 0.0)


def test_subnormals_are_flushed_inside_and_restored_after():
    assert _survives()
    with flush_denormals() as supported:
        if supported:
            assert not _survives()
    assert _survives()


def test_restored_when_the_block_raises():
    try:
        with flush_denormals():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert _survives()


def test_register_leaves_ieee_behaviour_for_the_caller():
    from avsm import register

    register(SAMPLE_DATA / "fixed_t1_2mm.nii.gz", SAMPLE_DATA / "moving_t1_2mm.nii.gz", method="affine",
             affine_iterations=2, device="cpu")
    assert _survives()

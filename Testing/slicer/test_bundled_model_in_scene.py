"""The bundled AVSM model through the scene bridge: the console's call with no --model, real MRML nodes.

Checks that the shipped weights are what ``method="avsm"`` uses, that the outputs land on the fixed grid,
and that hardening the deformable transform reproduces the warped volume (the network's maps are exported
like vsvf-opt's, so Slicer must resample them the same way)."""
from __future__ import annotations

import json

import numpy as np
import slicer
from avsm.checkpoints import models_dir

from AVSMRegistrationLib import register_volumes
from AVSMRegistrationLib.geometry import ijk_to_ras, same_grid
from slicer_test_support import add_pair, close_scene, hardened_on_fixed_grid, load_demo_pair, make_scene


def test_avsm_with_the_bundled_model_creates_every_output(tmp_path):
    scene = make_scene()
    try:
        nodes = add_pair(scene, *load_demo_pair())
        result = register_volumes(nodes["fixed"], nodes["moving"], method="avsm", device="cpu",
                                  movingLabels=nodes["movingLabels"], fixedLabels=nodes["fixedLabels"],
                                  tempRoot=tmp_path)
        shipped = [m for m in json.loads((models_dir() / "manifest.json").read_text())["models"] if m["method"] == "avsm"][0]
        assert result.report["model"] == shipped["name"] and result.report["model_sha256"] == shipped["sha256"]
        assert result.report["fold_count"] == 0
        for volume in (result.warped, result.warpedLabels, result.jacobian, result.folds):
            assert same_grid(volume, nodes["fixed"])
            np.testing.assert_array_equal(ijk_to_ras(volume), ijk_to_ras(nodes["fixed"]))
        warped = slicer.util.arrayFromVolume(result.warped)
        hardened = hardened_on_fixed_grid(scene, nodes["moving"], result.transform, nodes["fixed"])
        inside = (warped > 0.05 * warped.max()) & (hardened > 0.05 * warped.max())
        assert inside.mean() > 0.1
        assert np.corrcoef(hardened[inside], warped[inside])[0, 1] > 0.98
    finally:
        close_scene(scene)


def test_the_fast_preset_runs_the_bundled_network_and_names_itself(scene, nodes, tmp_path):
    result = register_volumes(nodes["fixed"], nodes["moving"], preset="fast", device="cpu", workingSpacing=4.0,
                              movingLabels=nodes["movingLabels"], fixedLabels=nodes["fixedLabels"], tempRoot=tmp_path)
    assert (result.report["preset"], result.report["method"]) == ("fast", "avsm")
    assert result.report["working_spacing_mm"] == 4.0 and result.report["fold_count"] == 0
    assert result.summary.startswith("Preset 'fast' (AVSM network): 'moving' -> 'fixed' in ")
    assert list(tmp_path.iterdir()) == []


def test_the_manifest_lists_models_and_leaves_the_default_to_the_method_registry():
    manifest = json.loads((models_dir() / "manifest.json").read_text())
    assert list(manifest) == ["models"]

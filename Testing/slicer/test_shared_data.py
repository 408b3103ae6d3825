"""The scene bridge on anatomy from ../shared/data (malf2012 1010 / 1011 with manual labels, 3 mm):
what the bundled demo pair cannot show, Dice of real structures. Skipped, with the reason, when
../shared/data is absent."""
from __future__ import annotations

import os

import numpy as np
import slicer

from AVSMRegistrationLib import register_volumes
from AVSMRegistrationLib.geometry import same_grid
from slicer_test_support import FAST, add_pair, hardened_on_fixed_grid


def test_vsvf_on_labelled_anatomy_builds_consistent_nodes(scene, malf_pair, tmp_path):
    nodes = add_pair(scene, *malf_pair, fixed_name="1010", moving_name="1011")
    result = register_volumes(nodes["fixed"], nodes["moving"], method="vsvf-opt", device="cpu",
                              movingLabels=nodes["movingLabels"], fixedLabels=nodes["fixedLabels"], tempRoot=tmp_path,
                              **FAST)
    assert len(result.nodes()) == 6 and not result.transform.IsLinear()
    for volume in (result.warped, result.warpedLabels, result.jacobian, result.folds):
        assert same_grid(volume, nodes["fixed"])
    # white matter, ventricles, cerebellum cortex, thalamus of two subjects: well above chance after registration
    assert len(result.report["dice_per_label"]) == 4 and result.report["dice_mean"] > 0.5
    assert f"Dice {result.report['dice_mean']:.3f} over 4 labels" in result.summary

    warped = slicer.util.arrayFromVolume(result.warped)
    hardened = hardened_on_fixed_grid(scene, nodes["moving"], result.transform, nodes["fixed"])
    inside = (warped > 0.05 * warped.max()) & (hardened > 0.05 * warped.max())
    assert inside.mean() > 0.1
    assert np.corrcoef(hardened[inside], warped[inside])[0, 1] > 0.98
    assert os.listdir(tmp_path) == []

"""Bad input gets one clear sentence and creates nothing."""
from __future__ import annotations

import os

import numpy as np
import pytest
import slicer

from AVSMRegistrationLib import RegistrationInputError, input_problem, register_volumes
from slicer_test_support import add_volume, downsample, scene_state


def assert_refused(scene, tmp_path, match: str, *args, **kwargs):
    before = scene_state(scene)
    with pytest.raises(RegistrationInputError, match=match):
        register_volumes(*args, tempRoot=tmp_path, **kwargs)
    assert scene_state(scene) == before
    assert os.listdir(tmp_path) == []


def test_valid_inputs_have_no_problem(nodes):
    assert input_problem(nodes["fixed"], nodes["moving"], nodes["movingLabels"], nodes["fixedLabels"]) is None


def test_same_node_as_fixed_and_moving(scene, nodes, tmp_path):
    assert_refused(scene, tmp_path, "same node 'fixed'", nodes["fixed"], nodes["fixed"], method="affine")


def test_missing_volume_asks_for_one(nodes):
    assert input_problem(nodes["fixed"], None) == "Select a moving volume."
    assert input_problem(None, nodes["moving"]) == "Select a fixed volume."


def test_two_dimensional_volume(scene, nodes, demo_pair, tmp_path):
    single_slice = add_volume(scene, demo_pair[1][:, :, 15:16], "one slice")
    assert_refused(scene, tmp_path, r"is 2-D \(\d+ x \d+ x 1 voxels\)", nodes["fixed"], single_slice, method="affine")


def test_vector_volume(scene, nodes, tmp_path):
    vector = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "rgb")
    slicer.util.updateVolumeFromArray(vector, np.random.rand(8, 9, 10, 3).astype(np.float32))
    assert_refused(scene, tmp_path, r"vector volume \(3 components\)", vector, nodes["moving"], method="affine")


def test_empty_volume(scene, nodes, demo_pair, tmp_path):
    zeros = add_volume(scene, demo_pair[1] * 0, "zeros")
    assert_refused(scene, tmp_path, "is empty: every voxel is 0", nodes["fixed"], zeros, method="affine")
    no_image = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "no image")
    assert_refused(scene, tmp_path, "has no image data", no_image, nodes["moving"], method="affine")


def test_label_map_given_as_intensity_volume(scene, nodes, tmp_path):
    assert_refused(scene, tmp_path, "is a label map", nodes["fixed"], nodes["movingLabels"], method="affine")


def test_labels_on_a_different_grid(scene, nodes, demo_pair, tmp_path):
    coarse = add_volume(scene, downsample(demo_pair[3], 6.0, labels=True), "coarse labels", "vtkMRMLLabelMapVolumeNode")
    assert_refused(scene, tmp_path, "not on the grid of the moving volume 'moving'", nodes["fixed"], nodes["moving"],
                   movingLabels=coarse, method="affine")
    assert_refused(scene, tmp_path, "fixed label map 'coarse labels' is not on the grid", nodes["fixed"],
                   nodes["moving"], fixedLabels=coarse, method="affine")


def test_labels_of_the_wrong_type(scene, nodes, tmp_path):
    assert_refused(scene, tmp_path, "must be a label map volume or a segmentation", nodes["fixed"], nodes["moving"],
                   movingLabels=nodes["fixed"], method="affine")


def test_output_node_that_is_an_input(scene, nodes, tmp_path):
    assert_refused(scene, tmp_path, "would overwrite the input 'moving'", nodes["fixed"], nodes["moving"],
                   outputWarped=nodes["moving"], method="affine")


def test_output_node_of_the_wrong_class(scene, nodes, tmp_path):
    transform = scene.AddNewNodeByClass("vtkMRMLTransformNode", "T")
    assert_refused(scene, tmp_path, "must be a vtkMRMLScalarVolumeNode", nodes["fixed"], nodes["moving"],
                   outputJacobian=transform, method="affine")


def test_no_output_selected(scene, nodes, tmp_path):
    assert_refused(scene, tmp_path, "Select at least one output", nodes["fixed"], nodes["moving"], method="affine",
                   outputTransform=False, outputAffine=False, outputWarped=False, outputWarpedLabels=False,
                   outputJacobian=False, outputFolds=False)


def test_unknown_method_and_device(scene, nodes, tmp_path):
    assert_refused(scene, tmp_path, "^unknown method 'bspline'; choose one of avsm, voxelmorph, vsvf-opt, affine$",
                   nodes["fixed"], nodes["moving"], method="bspline")
    assert_refused(scene, tmp_path, "^unknown preset 'quick'; choose one of fast, default, accurate$",
                   nodes["fixed"], nodes["moving"], preset="quick")
    assert_refused(scene, tmp_path, "Unknown device 'tpu'", nodes["fixed"], nodes["moving"], device="tpu")


def test_missing_model_file(scene, nodes, tmp_path):
    assert_refused(scene, tmp_path, "Model file '.*nowhere.pt' does not exist", nodes["fixed"], nodes["moving"],
                   model=str(tmp_path / "nowhere.pt"))


def test_affine_refinement_without_a_network_or_below_zero(scene, nodes, tmp_path):
    assert_refused(scene, tmp_path, r"option affine_refine \(--affine-refine\) does not apply to method 'affine'",
                   nodes["fixed"], nodes["moving"], method="affine", affineRefine=10)
    assert_refused(scene, tmp_path, r"option affine_refine \(--affine-refine\) does not apply to method 'vsvf-opt'",
                   nodes["fixed"], nodes["moving"], preset="accurate", affineRefine=10)
    assert_refused(scene, tmp_path, r"^affine_refine must be >= 0 \(got -2\)$",
                   nodes["fixed"], nodes["moving"], method="avsm", affineRefine=-2)


def test_network_options_for_a_method_without_a_network(scene, nodes, tmp_path):
    """Refused by the bridge, before any file is written: the method that the preset or method runs decides."""
    assert_refused(scene, tmp_path, r"^option instance_opt \(--instance-opt\) does not apply to method 'vsvf-opt', "
                   "which takes affine_iterations, vsvf_iterations, vsvf_settings$",
                   nodes["fixed"], nodes["moving"], preset="accurate", instanceOpt=10)
    assert_refused(scene, tmp_path, r"^option model \(--model\) does not apply to method 'affine', which takes "
                   "affine_iterations$", nodes["fixed"], nodes["moving"], method="affine", model="avsm-brain")


def test_a_preset_with_another_method_is_refused_before_the_engine_starts(scene, nodes, tmp_path):
    """The engine's own line; the temporary folder (made just before the engine process starts) never is."""
    assert_refused(scene, tmp_path, "^preset 'fast' runs method 'avsm', not 'vsvf-opt': give one of --preset and "
                   "--method$", nodes["fixed"], nodes["moving"], preset="fast", method="vsvf-opt", background=True)

"""Engine outputs -> MRML nodes, checked with a stand-in engine whose transform is known
(fake_engine.py), run the way the panel runs it: a background `avsm register` process."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import slicer

import fake_engine
from AVSMRegistrationLib import RegistrationNodes, register_volumes
from AVSMRegistrationLib.display import COLOR_ATTRIBUTE, diverging_color
from AVSMRegistrationLib.geometry import ijk_to_ras, image_from_volume, same_grid, set_ijk_to_ras
from slicer_test_support import scene_state


def run(nodes, launcher, tmp_path, **kwargs) -> RegistrationNodes:
    kwargs.setdefault("method", "vsvf-opt")
    return register_volumes(nodes["fixed"], nodes["moving"], background=True, launcher=launcher,
                            tempRoot=tmp_path, **kwargs)


def hardened_on_fixed_grid(scene, moving, transform, fixed) -> np.ndarray:
    """Harden `transform` on a copy of `moving` (Slicer resamples it), then read it on the fixed grid."""
    copy = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "moving copy")
    copy.SetAndObserveImageData(moving.GetImageData())
    set_ijk_to_ras(copy, ijk_to_ras(moving))
    copy.SetAndObserveTransformNodeID(transform.GetID())
    assert copy.HardenTransform()
    hardened = image_from_volume(copy, sitk.sitkFloat32)
    on_fixed = sitk.Resample(hardened, image_from_volume(fixed), sitk.Transform(), sitk.sitkLinear, 0.0)
    return sitk.GetArrayFromImage(on_fixed)


def test_every_output_is_created_on_the_fixed_grid(scene, nodes, fake_launcher, tmp_path):
    result = run(nodes, fake_launcher, tmp_path, movingLabels=nodes["movingLabels"], fixedLabels=nodes["fixedLabels"])

    assert [n.GetClassName() for n in result.nodes()] == [
        "vtkMRMLTransformNode", "vtkMRMLTransformNode", "vtkMRMLScalarVolumeNode", "vtkMRMLLabelMapVolumeNode",
        "vtkMRMLScalarVolumeNode", "vtkMRMLLabelMapVolumeNode"]
    for volume in (result.warped, result.warpedLabels, result.jacobian, result.folds):
        assert same_grid(volume, nodes["fixed"]), volume.GetName()
        np.testing.assert_array_equal(ijk_to_ras(volume), ijk_to_ras(nodes["fixed"]))
    assert slicer.util.arrayFromVolume(result.folds).sum() == 1  # the one voxel the fake gives det(J) = -0.5
    assert not result.transform.IsLinear()
    assert result.affine.IsLinear()
    assert os.listdir(tmp_path) == []  # temporary files removed


def test_transforms_reference_their_fixed_and_moving_volumes(scene, nodes, fake_launcher, tmp_path):
    result = run(nodes, fake_launcher, tmp_path)
    for transform in (result.transform, result.affine):
        assert transform.GetNodeReference(transform.GetFixedNodeReferenceRole()) is nodes["fixed"]
        assert transform.GetNodeReference(transform.GetMovingNodeReferenceRole()) is nodes["moving"]


def test_affine_node_holds_the_engine_affine_in_ras(scene, nodes, fake_launcher, tmp_path):
    result = run(nodes, fake_launcher, tmp_path)
    to_parent = slicer.util.arrayFromTransformMatrix(result.affine, toWorld=True)
    # ITK: fixed point p_LPS -> moving p_LPS + t. Slicer's ToParent moves moving onto fixed: -t, in RAS.
    expected = -np.diag([-1.0, -1.0, 1.0]) @ np.array(fake_engine.TRANSLATION_MM)
    np.testing.assert_allclose(to_parent[:3, 3], expected, atol=1e-6)
    np.testing.assert_allclose(to_parent[:3, :3], np.eye(3), atol=1e-9)


def test_hardening_the_transform_on_a_copy_of_moving_reproduces_the_warped_volume(scene, nodes, fake_launcher, tmp_path):
    result = run(nodes, fake_launcher, tmp_path)
    warped = slicer.util.arrayFromVolume(result.warped)
    hardened = hardened_on_fixed_grid(scene, nodes["moving"], result.transform, nodes["fixed"])

    inside = (warped > 0) & (hardened > 0)
    assert inside.mean() > 0.2
    error = np.abs(hardened - warped)[inside]
    assert np.corrcoef(hardened[inside], warped[inside])[0, 1] > 0.99
    assert error.mean() < 0.02 * warped.max()

    result.transform.Inverse()  # the wrong direction must not pass the same check
    wrong = hardened_on_fixed_grid(scene, nodes["moving"], result.transform, nodes["fixed"])
    assert np.abs(wrong - warped)[inside].mean() > 3 * error.mean()


def test_grid_display_over_the_fixed_volume(scene, nodes, fake_launcher, tmp_path):
    display = run(nodes, fake_launcher, tmp_path).transform.GetDisplayNode()
    assert display.GetVisualizationMode() == slicer.vtkMRMLTransformDisplayNode.VIS_MODE_GRID
    assert display.GetGridSpacingMm() == pytest.approx(10.0)
    assert display.GetRegionNode() is nodes["fixed"]
    assert display.GetVisibility2D() and display.GetVisibility()


def test_grid_hidden_when_not_asked_for(scene, nodes, fake_launcher, tmp_path):
    display = run(nodes, fake_launcher, tmp_path, showGrid=False).transform.GetDisplayNode()
    assert display.GetVisualizationMode() == slicer.vtkMRMLTransformDisplayNode.VIS_MODE_GRID
    assert not display.GetVisibility2D()


def test_jacobian_uses_a_diverging_table_centred_on_one(scene, nodes, fake_launcher, tmp_path):
    display = run(nodes, fake_launcher, tmp_path).jacobian.GetDisplayNode()
    table = display.GetColorNode()
    assert table.GetAttribute(COLOR_ATTRIBUTE) == "detJ"
    assert display.GetLevel() == pytest.approx(1.0)
    assert display.GetWindow() == pytest.approx(3.0)  # fake det(J) spans -0.5..1.8: |1 - (-0.5)| * 2
    middle = [0.0] * 4
    table.GetColor(table.GetNumberOfColors() // 2, middle)
    np.testing.assert_allclose(middle[:3], [1.0, 1.0, 1.0])
    low, high = [0.0] * 4, [0.0] * 4
    table.GetColor(0, low), table.GetColor(table.GetNumberOfColors() - 1, high)
    assert low[2] > low[0] and high[0] > high[2]  # blue below 1 (shrinking), red above (expanding)
    assert diverging_color(0.5) == (1.0, 1.0, 1.0)


def test_colour_tables_are_reused_by_the_next_run(scene, nodes, fake_launcher, tmp_path):
    first = run(nodes, fake_launcher, tmp_path)
    second = run(nodes, fake_launcher, tmp_path)
    assert first.jacobian.GetDisplayNode().GetColorNodeID() == second.jacobian.GetDisplayNode().GetColorNodeID()
    assert first.folds.GetDisplayNode().GetColorNodeID() == second.folds.GetDisplayNode().GetColorNodeID()
    assert first.transform.GetName() != second.transform.GetName()


def test_outputs_are_placed_beside_the_moving_volume(scene, nodes, fake_launcher, tmp_path):
    result = run(nodes, fake_launcher, tmp_path, movingLabels=nodes["movingLabels"])
    hierarchy = scene.GetSubjectHierarchyNode()
    for node in result.nodes():
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == nodes["folder"], node.GetName()


def test_inputs_are_not_modified(scene, nodes, fake_launcher, tmp_path):
    keys = ("fixed", "moving", "fixedLabels", "movingLabels")
    before = {key: (nodes[key].GetMTime(), slicer.util.arrayFromVolume(nodes[key]).copy(), ijk_to_ras(nodes[key]),
                    nodes[key].GetParentTransformNode()) for key in keys}
    run(nodes, fake_launcher, tmp_path, movingLabels=nodes["movingLabels"], fixedLabels=nodes["fixedLabels"])
    for key in keys:
        mtime, array, matrix, parent = before[key]
        assert nodes[key].GetMTime() == mtime, key
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(nodes[key]), array)
        np.testing.assert_array_equal(ijk_to_ras(nodes[key]), matrix)
        assert nodes[key].GetParentTransformNode() is parent and nodes[key].GetStorageNode() is None


def test_summary_reports_time_device_folds_and_dice(scene, nodes, fake_launcher, tmp_path):
    result = run(nodes, fake_launcher, tmp_path, movingLabels=nodes["movingLabels"], fixedLabels=nodes["fixedLabels"])
    assert result.summary.startswith("vSVF optimisation: '1011' -> '1010' in ")
    assert " s on cpu" in result.summary
    assert "folds 1 (" in result.summary and "Dice 0.500 over 1 labels" in result.summary
    assert result.transform.GetAttribute("AVSMRegistration.Summary") == result.summary


def test_only_the_requested_outputs_are_created(scene, nodes, fake_launcher, tmp_path):
    before = scene.GetNumberOfNodes()
    result = run(nodes, fake_launcher, tmp_path, outputAffine=False, outputWarped=False, outputWarpedLabels=False,
                 outputJacobian=False, outputFolds=False, showGrid=False)
    assert result.nodes() == [result.transform]
    assert scene.GetNumberOfNodes() - before == 2  # the transform and its display node


def test_existing_output_nodes_are_filled_in_place(scene, nodes, fake_launcher, tmp_path):
    transform = scene.AddNewNodeByClass("vtkMRMLTransformNode", "my transform")
    warped = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "my warped")
    result = run(nodes, fake_launcher, tmp_path, outputTransform=transform, outputWarped=warped)
    assert result.transform is transform and result.warped is warped
    assert transform.GetName() == "my transform" and not transform.IsLinear()
    assert same_grid(warped, nodes["fixed"])
    assert scene.GetNodesByName("1011 warped").GetNumberOfItems() == 0


def test_segmentation_labels_come_back_as_a_segmentation(scene, nodes, fake_launcher, tmp_path):
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "1011 segmentation")
    slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(nodes["movingLabels"], segmentation)
    names = ["white matter", "ventricles", "cerebellum", "thalamus"]
    segments = segmentation.GetSegmentation()
    for index, name in enumerate(names):
        segments.GetNthSegment(index).SetName(name)
        segments.GetNthSegment(index).SetColor(0.1 * index, 0.5, 0.9)

    result = run(nodes, fake_launcher, tmp_path, movingLabels=segmentation)

    warped = result.warpedLabels
    assert warped.IsA("vtkMRMLSegmentationNode")
    out = warped.GetSegmentation()
    assert [out.GetNthSegment(i).GetName() for i in range(out.GetNumberOfSegments())] == names
    np.testing.assert_allclose(out.GetNthSegment(1).GetColor(), (0.1, 0.5, 0.9))
    # the same voxels as the warped label map from the label-map input
    reference = run(nodes, fake_launcher, tmp_path, movingLabels=nodes["movingLabels"]).warpedLabels
    expected = slicer.util.arrayFromVolume(reference)
    for index in range(len(names)):
        segment_id = out.GetNthSegmentID(index)
        binary = slicer.vtkOrientedImageData()
        assert slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(warped, segment_id, binary)
        holder = slicer.vtkMRMLLabelMapVolumeNode()  # segments share one layer: select this one's value
        slicer.vtkSlicerSegmentationsModuleLogic.CopyOrientedImageDataToVolumeNode(binary, holder)
        on_fixed = sitk.Resample(image_from_volume(holder), image_from_volume(nodes["fixed"]), sitk.Transform(),
                                 sitk.sitkNearestNeighbor, 0)
        label_value = out.GetNthSegment(index).GetLabelValue()
        np.testing.assert_array_equal(sitk.GetArrayFromImage(on_fixed) == label_value, expected == index + 1)


def test_in_process_call_gives_the_same_nodes(scene, nodes, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "avsm", fake_engine)
    progress = []
    result = register_volumes(nodes["fixed"], nodes["moving"], method="vsvf-opt", movingLabels=nodes["movingLabels"],
                              tempRoot=tmp_path, progress=lambda *event: progress.append(event))
    assert len(result.nodes()) == 6
    assert ("deformable", 0.5, "fake engine at work") in progress
    assert os.listdir(tmp_path) == []


def test_engine_input_error_in_process_creates_nothing(scene, nodes, tmp_path, monkeypatch):
    from AVSMRegistrationLib import RegistrationInputError
    monkeypatch.setitem(sys.modules, "avsm", fake_engine)
    before = scene_state(scene)
    with pytest.raises(RegistrationInputError, match="unknown method 'voxelmorph'"):
        register_volumes(nodes["fixed"], nodes["moving"], method="voxelmorph", tempRoot=tmp_path)
    assert scene_state(scene) == before
    assert os.listdir(tmp_path) == []

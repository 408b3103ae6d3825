"""Engine outputs -> MRML nodes, with the real `avsm` engine.

Two kinds of run: the panel's (a background `python -m avsm register ... --progress json` process,
vSVF optimisation on the bundled demo pair, run once for this module and inspected by many tests)
and the console's (`avsm.register` in this process, affine on a pair with a known answer: the
moving volume is the fixed one moved by a known rigid transform)."""
from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
import slicer

from AVSMRegistrationLib import register_volumes
from AVSMRegistrationLib.display import COLOR_ATTRIBUTE, diverging_color, jacobian_window
from AVSMRegistrationLib.geometry import ijk_to_ras, image_from_volume, same_grid
from slicer_test_support import (AFFINE_FAST, FAST, FAST_AFFINE_ONLY, add_pair, close_scene, hardened_on_fixed_grid, load_demo_pair,
                                 make_scene)

INPUT_KEYS = ("fixed", "moving", "fixedLabels", "movingLabels")


# -- the panel's way: one background vSVF run on the demo pair, shared by the tests below -------------
@pytest.fixture(scope="module")
def panel_run(tmp_path_factory):
    scene = make_scene()
    nodes = add_pair(scene, *load_demo_pair())
    before = {key: (nodes[key].GetMTime(), slicer.util.arrayFromVolume(nodes[key]).copy(), ijk_to_ras(nodes[key]),
                    nodes[key].GetParentTransformNode()) for key in INPUT_KEYS}
    temp = tmp_path_factory.mktemp("panel_run")
    events, log = [], []
    result = register_volumes(nodes["fixed"], nodes["moving"], method="vsvf-opt", device="cpu",
                              movingLabels=nodes["movingLabels"], fixedLabels=nodes["fixedLabels"],
                              background=True, tempRoot=temp, progress=lambda *event: events.append(event),
                              log=log.append, **FAST)
    yield SimpleNamespace(scene=scene, nodes=nodes, result=result, before=before, temp=temp, events=events, log=log)
    close_scene(scene)


def test_every_output_is_created_on_the_fixed_grid(panel_run):
    result, fixed = panel_run.result, panel_run.nodes["fixed"]
    assert [n.GetClassName() for n in result.nodes()] == [
        "vtkMRMLTransformNode", "vtkMRMLTransformNode", "vtkMRMLScalarVolumeNode", "vtkMRMLLabelMapVolumeNode",
        "vtkMRMLScalarVolumeNode", "vtkMRMLLabelMapVolumeNode"]
    for volume in (result.warped, result.warpedLabels, result.jacobian, result.folds):
        assert same_grid(volume, fixed), volume.GetName()
        np.testing.assert_array_equal(ijk_to_ras(volume), ijk_to_ras(fixed))
    assert not result.transform.IsLinear()
    assert result.affine.IsLinear()
    det = slicer.util.arrayFromVolume(result.jacobian)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(result.folds) > 0, det <= 0)
    assert int((det <= 0).sum()) == result.report["fold_count"]
    assert set(np.unique(slicer.util.arrayFromVolume(result.warpedLabels))) <= {0, 1, 2, 3, 4}
    assert os.listdir(panel_run.temp) == []  # temporary files removed


def test_background_run_reports_progress_to_the_end(panel_run):
    fractions = [fraction for _, fraction, _ in panel_run.events]
    assert len(fractions) > 3 and all(0.0 <= f <= 1.0 for f in fractions)
    assert fractions[-1] == pytest.approx(1.0)
    assert any(stage == "vsvf" for stage, _, _ in panel_run.events)
    assert panel_run.log  # the status log got the engine's messages


def test_transforms_reference_their_fixed_and_moving_volumes(panel_run):
    for transform in (panel_run.result.transform, panel_run.result.affine):
        assert transform.GetNodeReference(transform.GetFixedNodeReferenceRole()) is panel_run.nodes["fixed"]
        assert transform.GetNodeReference(transform.GetMovingNodeReferenceRole()) is panel_run.nodes["moving"]


def test_hardening_the_deformable_transform_on_a_copy_of_moving_reproduces_the_warped_volume(panel_run):
    scene, nodes, result = panel_run.scene, panel_run.nodes, panel_run.result
    warped = slicer.util.arrayFromVolume(result.warped)
    hardened = hardened_on_fixed_grid(scene, nodes["moving"], result.transform, nodes["fixed"])
    inside = (warped > 0.05 * warped.max()) & (hardened > 0.05 * warped.max())
    assert inside.mean() > 0.1
    assert np.corrcoef(hardened[inside], warped[inside])[0, 1] > 0.98
    assert np.abs(hardened - warped)[inside].mean() < 0.03 * warped.max()


def test_grid_display_over_the_fixed_volume(panel_run):
    display = panel_run.result.transform.GetDisplayNode()
    assert display.GetVisualizationMode() == slicer.vtkMRMLTransformDisplayNode.VIS_MODE_GRID
    assert display.GetGridSpacingMm() == pytest.approx(10.0)
    assert display.GetRegionNode() is panel_run.nodes["fixed"]
    assert display.GetVisibility2D() and display.GetVisibility()


def test_jacobian_uses_a_diverging_table_centred_on_one(panel_run):
    result = panel_run.result
    display = result.jacobian.GetDisplayNode()
    table = display.GetColorNode()
    assert table.GetAttribute(COLOR_ATTRIBUTE) == "detJ"
    det = slicer.util.arrayFromVolume(result.jacobian)
    assert result.report["det_jacobian_min"] == pytest.approx(det.min(), rel=1e-4, abs=1e-4)
    assert result.report["det_jacobian_max"] == pytest.approx(det.max(), rel=1e-4, abs=1e-4)
    assert display.GetLevel() == pytest.approx(1.0)
    window = 2.0 * max(1.0 - float(det.min()), float(det.max()) - 1.0, 0.05)
    assert display.GetWindow() == pytest.approx(window, rel=1e-3)
    middle = [0.0] * 4
    table.GetColor(table.GetNumberOfColors() // 2, middle)
    np.testing.assert_allclose(middle[:3], [1.0, 1.0, 1.0])
    low, high = [0.0] * 4, [0.0] * 4
    table.GetColor(0, low), table.GetColor(table.GetNumberOfColors() - 1, high)
    assert low[2] > low[0] and high[0] > high[2]  # blue below 1 (shrinking), red above (expanding)
    assert diverging_color(0.5) == (1.0, 1.0, 1.0)
    assert jacobian_window(-0.5, 1.8) == (3.0, 1.0)


def test_outputs_are_placed_beside_the_moving_volume(panel_run):
    hierarchy = panel_run.scene.GetSubjectHierarchyNode()
    for node in panel_run.result.nodes():
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == panel_run.nodes["folder"], node.GetName()


def test_inputs_are_not_modified(panel_run):
    nodes = panel_run.nodes
    for key in INPUT_KEYS:
        mtime, array, matrix, parent = panel_run.before[key]
        assert nodes[key].GetMTime() == mtime, key
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(nodes[key]), array)
        np.testing.assert_array_equal(ijk_to_ras(nodes[key]), matrix)
        assert nodes[key].GetParentTransformNode() is parent and nodes[key].GetStorageNode() is None


def test_summary_reports_time_device_folds_and_dice(panel_run):
    result = panel_run.result
    report = result.report
    assert report["method"] == "vsvf-opt" and report["device"] == "cpu"
    assert result.summary.startswith("vSVF optimisation: 'moving' -> 'fixed' in ")
    assert " s on cpu" in result.summary
    assert f"folds {report['fold_count']} (" in result.summary
    assert len(report["dice_per_label"]) == 4 and 0.5 < report["dice_mean"] <= 1.0
    assert f"Dice {report['dice_mean']:.3f} over 4 labels" in result.summary
    assert result.transform.GetAttribute("AVSMRegistration.Summary") == result.summary


# -- the console's way: affine in this process on the known-answer pair -------------------------------
def brain_points_ras(image: sitk.Image) -> np.ndarray:
    """Homogeneous RAS points spread over the middle of the volume (where the brain is)."""
    points = []
    for fractions in np.array(np.meshgrid([0.3, 0.5, 0.7], [0.3, 0.5, 0.7], [0.3, 0.5, 0.7])).reshape(3, -1).T:
        index = (np.array(image.GetSize()) - 1) * fractions
        lps = np.array(image.TransformContinuousIndexToPhysicalPoint(index.tolist()))
        points.append([-lps[0], -lps[1], lps[2], 1.0])
    return np.array(points)


def test_affine_node_holds_the_known_transform_in_ras(scene, known_nodes, known_pair, tmp_path):
    progress = []
    result = register_volumes(known_nodes["fixed"], known_nodes["moving"], method="affine", device="cpu",
                              movingLabels=known_nodes["movingLabels"], tempRoot=tmp_path,
                              progress=lambda *event: progress.append(event), **AFFINE_FAST)
    assert len(result.nodes()) == 6 and result.affine.IsLinear()
    fractions = [fraction for _, fraction, _ in progress]
    assert fractions and fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)

    to_parent = slicer.util.arrayFromTransformMatrix(result.affine, toWorld=True)
    expected = known_pair.expected_to_parent_ras()
    np.testing.assert_allclose(to_parent[:3, :3], expected[:3, :3], atol=0.02)
    points = brain_points_ras(known_pair.fixed)
    error_mm = np.linalg.norm((points @ to_parent.T - points @ expected.T)[:, :3], axis=1)
    assert error_mm.max() < 1.0, error_mm
    # the sign convention: with the opposite direction the error would be twice the known motion
    assert np.linalg.norm((points @ np.linalg.inv(to_parent).T - points @ expected.T)[:, :3], axis=1).min() > 5.0
    assert os.listdir(tmp_path) == []


def test_hardening_the_transform_on_a_copy_of_moving_reproduces_the_warped_and_the_fixed_volume(
        scene, known_nodes, tmp_path):
    fixed, moving = known_nodes["fixed"], known_nodes["moving"]
    result = register_volumes(fixed, moving, method="affine", device="cpu", tempRoot=tmp_path,
                              outputWarpedLabels=False, outputJacobian=False, outputFolds=False, **AFFINE_FAST)
    warped = slicer.util.arrayFromVolume(result.warped)
    target = slicer.util.arrayFromVolume(fixed)
    hardened = hardened_on_fixed_grid(scene, moving, result.transform, fixed)

    inside = (warped > 0.05 * warped.max()) & (hardened > 0.05 * warped.max())
    assert inside.mean() > 0.1
    error = np.abs(hardened - warped)[inside]
    assert np.corrcoef(hardened[inside], warped[inside])[0, 1] > 0.99
    assert error.mean() < 0.02 * warped.max()
    brain = inside & (target > 0.05 * target.max())
    assert np.corrcoef(hardened[brain], target[brain])[0, 1] > 0.95  # the known answer: back onto the fixed

    result.transform.Inverse()  # the wrong direction must not pass the same check
    wrong = hardened_on_fixed_grid(scene, moving, result.transform, fixed)
    assert np.abs(wrong - warped)[inside].mean() > 3 * error.mean()


def test_grid_hidden_and_only_the_requested_outputs_created(scene, known_nodes, tmp_path):
    before = scene.GetNumberOfNodes()
    result = register_volumes(known_nodes["fixed"], known_nodes["moving"], method="affine", device="cpu",
                              tempRoot=tmp_path, outputAffine=False, outputWarped=False, outputWarpedLabels=False,
                              outputJacobian=False, outputFolds=False, showGrid=False, **FAST_AFFINE_ONLY)
    assert result.nodes() == [result.transform]
    assert scene.GetNumberOfNodes() - before == 2  # the transform and its display node
    display = result.transform.GetDisplayNode()
    assert display.GetVisualizationMode() == slicer.vtkMRMLTransformDisplayNode.VIS_MODE_GRID
    assert not display.GetVisibility2D()


def test_colour_tables_are_reused_by_the_next_run(scene, known_nodes, tmp_path):
    first, second = (register_volumes(known_nodes["fixed"], known_nodes["moving"], method="affine", device="cpu",
                                      tempRoot=tmp_path, outputWarped=False, outputWarpedLabels=False,
                                      **FAST_AFFINE_ONLY)
                     for _ in range(2))
    assert first.jacobian.GetDisplayNode().GetColorNodeID() == second.jacobian.GetDisplayNode().GetColorNodeID()
    assert first.folds.GetDisplayNode().GetColorNodeID() == second.folds.GetDisplayNode().GetColorNodeID()
    assert first.transform.GetName() != second.transform.GetName()


def test_existing_output_nodes_are_filled_in_place(scene, known_nodes, tmp_path):
    transform = scene.AddNewNodeByClass("vtkMRMLTransformNode", "my transform")
    warped = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "my warped")
    result = register_volumes(known_nodes["fixed"], known_nodes["moving"], method="vsvf-opt", device="cpu",
                              tempRoot=tmp_path, outputTransform=transform, outputWarped=warped, **FAST)
    assert result.transform is transform and result.warped is warped
    assert transform.GetName() == "my transform" and not transform.IsLinear()
    assert same_grid(warped, known_nodes["fixed"])
    assert scene.GetNodesByName("moved warped").GetNumberOfItems() == 0


def test_segmentation_labels_come_back_as_a_segmentation(scene, known_nodes, tmp_path):
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "moved segmentation")
    slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(known_nodes["movingLabels"], segmentation)
    names = ["left inferior", "right inferior", "left superior", "right superior"]  # quadrant_labels 1..4
    segments = segmentation.GetSegmentation()
    assert segments.GetNumberOfSegments() == len(names)
    for index, name in enumerate(names):
        segments.GetNthSegment(index).SetName(name)
        segments.GetNthSegment(index).SetColor(0.1 * index, 0.5, 0.9)

    run = dict(method="affine", device="cpu", tempRoot=tmp_path, outputJacobian=False, outputFolds=False, **AFFINE_FAST)
    result = register_volumes(known_nodes["fixed"], known_nodes["moving"], movingLabels=segmentation, **run)

    warped = result.warpedLabels
    assert warped.IsA("vtkMRMLSegmentationNode")
    out = warped.GetSegmentation()
    assert [out.GetNthSegment(i).GetName() for i in range(out.GetNumberOfSegments())] == names
    np.testing.assert_allclose(out.GetNthSegment(1).GetColor(), (0.1, 0.5, 0.9))
    # the same voxels as the warped label map from the label-map input, and (the known answer) the fixed labels
    reference = register_volumes(known_nodes["fixed"], known_nodes["moving"], movingLabels=known_nodes["movingLabels"],
                                 **run).warpedLabels
    expected = slicer.util.arrayFromVolume(reference)
    fixed_labels = slicer.util.arrayFromVolume(known_nodes["fixedLabels"])
    for index in range(len(names)):
        segment_id = out.GetNthSegmentID(index)
        binary = slicer.vtkOrientedImageData()
        assert slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(warped, segment_id, binary)
        holder = slicer.vtkMRMLLabelMapVolumeNode()  # segments share one layer: select this one's value
        slicer.vtkSlicerSegmentationsModuleLogic.CopyOrientedImageDataToVolumeNode(binary, holder)
        on_fixed = sitk.Resample(image_from_volume(holder), image_from_volume(known_nodes["fixed"]), sitk.Transform(),
                                 sitk.sitkNearestNeighbor, 0)
        mine = sitk.GetArrayFromImage(on_fixed) == out.GetNthSegment(index).GetLabelValue()
        np.testing.assert_array_equal(mine, expected == index + 1)
        truth = fixed_labels == index + 1
        assert 2 * (mine & truth).sum() / (mine.sum() + truth.sum()) > 0.85, names[index]


def test_device_choice_is_described_for_the_log():
    from AVSMRegistrationLib.engine import describe_device
    import torch
    assert describe_device("cpu") == "CPU (chosen)"
    expected = "GPU: " if torch.cuda.is_available() else "CPU (no CUDA GPU found)"
    assert describe_device("auto").startswith(expected)


def test_inverse_transform_is_an_optional_output_that_undoes_the_transform(scene, known_nodes, known_pair, tmp_path):
    fixed, moving = known_nodes["fixed"], known_nodes["moving"]
    quiet = dict(outputWarped=False, outputWarpedLabels=False, outputJacobian=False, outputFolds=False)
    assert register_volumes(fixed, moving, method="vsvf-opt", device="cpu", tempRoot=tmp_path, **quiet,
                            **FAST).inverse is None  # off unless asked for
    existing = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "my inverse")  # any transform node kind
    result = register_volumes(fixed, moving, method="vsvf-opt", device="cpu", tempRoot=tmp_path, outputInverse=existing,
                              **quiet, **FAST)
    inverse = result.inverse
    assert inverse is existing and not inverse.IsLinear()
    assert inverse.GetNodeReference(inverse.GetFixedNodeReferenceRole()) is moving
    assert inverse.GetNodeReference(inverse.GetMovingNodeReferenceRole()) is fixed
    forward, backward = result.transform.GetTransformToParent(), inverse.GetTransformToParent()
    errors = [np.linalg.norm(np.array(forward.TransformPoint(backward.TransformPoint(p[:3]))) - p[:3])
              for p in brain_points_ras(known_pair.fixed)]
    assert max(errors) < 0.5, errors  # mm: the engine inverts the map, it is not a dynamic Slicer inverse
    assert os.listdir(tmp_path) == []


def test_kept_intermediate_files_hold_the_inputs_outputs_and_the_engine_log(scene, known_nodes, tmp_path):
    from AVSMRegistrationLib import RegistrationJob, RegistrationOptions

    options = RegistrationOptions(method="affine", device="cpu", affine_iterations=5, working_spacing=8.0)
    job = RegistrationJob(known_nodes["fixed"], known_nodes["moving"], known_nodes["movingLabels"], options=options,
                          tempRoot=tmp_path, keepFiles=True)
    job.start()
    job.process.wait()
    job.finish()
    folder = job.kept_folder
    assert folder is not None and folder.parent == tmp_path
    names = {p.name for p in folder.iterdir()}
    assert {"fixed.nrrd", "moving.nrrd", "moving_labels.nrrd", "out", "engine.log"} <= names
    assert {"transform.h5", "inverse.h5", "report.json"} <= {p.name for p in (folder / "out").iterdir()}
    log = (folder / "engine.log").read_text().splitlines()
    assert " register " in log[0] and "--method affine" in log[0]

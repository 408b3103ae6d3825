"""The scene bridge with the real `avsm` engine on the 3 mm malf2012 pair (skipped without it)."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
import SimpleITK as sitk
import slicer

avsm = pytest.importorskip("avsm", reason="the avsm engine (torch) is not importable")

from AVSMRegistrationLib import RegistrationCancelled, RegistrationInputError, RegistrationJob, RegistrationOptions
from AVSMRegistrationLib import register_volumes
from AVSMRegistrationLib.geometry import ijk_to_ras, image_from_volume, same_grid, set_ijk_to_ras
from slicer_test_support import add_volume, scene_state

FAST = dict(affineSteps=20, vsvfSteps=20, workingSpacing=6.0)  # seconds on 2 CPU threads, not accuracy


def harden_copy_on_fixed_grid(scene, moving, transform, fixed) -> np.ndarray:
    copy = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "moving copy")
    copy.SetAndObserveImageData(moving.GetImageData())
    set_ijk_to_ras(copy, ijk_to_ras(moving))
    copy.SetAndObserveTransformNodeID(transform.GetID())
    assert copy.HardenTransform()
    on_fixed = sitk.Resample(image_from_volume(copy, sitk.sitkFloat32), image_from_volume(fixed), sitk.Transform(),
                             sitk.sitkLinear, 0.0)
    scene.RemoveNode(copy)
    return sitk.GetArrayFromImage(on_fixed)


def test_vsvf_run_in_process_builds_consistent_nodes(scene, nodes, tmp_path):
    progress = []
    result = register_volumes(nodes["fixed"], nodes["moving"], method="vsvf-opt", movingLabels=nodes["movingLabels"],
                              fixedLabels=nodes["fixedLabels"], tempRoot=tmp_path,
                              progress=lambda *event: progress.append(event), **FAST)

    fractions = [fraction for _, fraction, _ in progress]
    assert fractions and all(0.0 <= f <= 1.0 for f in fractions) and fractions[-1] == pytest.approx(1.0)

    assert len(result.nodes()) == 6 and not result.transform.IsLinear()
    for volume in (result.warped, result.warpedLabels, result.jacobian, result.folds):
        assert same_grid(volume, nodes["fixed"])
    assert "Dice" in result.summary and result.report["method"] == "vsvf-opt"
    folds = slicer.util.arrayFromVolume(result.folds)
    det = slicer.util.arrayFromVolume(result.jacobian)
    np.testing.assert_array_equal(folds > 0, det <= 0)

    warped = slicer.util.arrayFromVolume(result.warped)
    hardened = harden_copy_on_fixed_grid(scene, nodes["moving"], result.transform, nodes["fixed"])
    inside = (warped > 0.05 * warped.max()) & (hardened > 0.05 * warped.max())
    assert inside.mean() > 0.1
    assert np.corrcoef(hardened[inside], warped[inside])[0, 1] > 0.98
    assert np.abs(hardened - warped)[inside].mean() < 0.03 * warped.max()
    assert os.listdir(tmp_path) == []


def test_oblique_moving_volume_registers_back_onto_its_original(scene, malf_pair, tmp_path):
    """The same head on an oblique, anisotropic grid: a wrong RAS/LPS flip would make this fail."""
    fixed_image = malf_pair[0]
    rotation = sitk.VersorRigid3DTransform((0.0, 0.0, 0.0, 1.0))
    rotation.SetRotation((0.2, -0.3, 0.9), 0.4)
    grid = sitk.Image([60, 56, 40], sitk.sitkFloat32)
    grid.SetSpacing((3.0, 3.2, 3.8))
    grid.SetDirection(np.array(rotation.GetMatrix()).tolist())
    centre = fixed_image.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in fixed_image.GetSize()])
    extent = np.array(grid.GetDirection()).reshape(3, 3) @ (np.array(grid.GetSpacing()) * (np.array(grid.GetSize()) - 1) / 2)
    grid.SetOrigin((np.array(centre) - extent).tolist())
    oblique_image = sitk.Resample(fixed_image, grid, sitk.Transform(), sitk.sitkLinear, 0.0)

    fixed = add_volume(scene, fixed_image, "fixed")
    moving = add_volume(scene, oblique_image, "oblique")
    result = register_volumes(fixed, moving, method="affine", tempRoot=tmp_path, affineSteps=20,
                              outputWarpedLabels=False, outputJacobian=False, outputFolds=False)

    to_parent = slicer.util.arrayFromTransformMatrix(result.affine, toWorld=True)
    np.testing.assert_allclose(to_parent[:3, :3], np.eye(3), atol=0.05)
    assert np.abs(to_parent[:3, 3]).max() < 3.0  # mm, one voxel
    warped = slicer.util.arrayFromVolume(result.warped)
    target = sitk.GetArrayFromImage(fixed_image)
    inside = warped > 0
    assert np.corrcoef(warped[inside], target[inside])[0, 1] > 0.95
    hardened = harden_copy_on_fixed_grid(scene, moving, result.transform, fixed)
    both = inside & (hardened > 0)
    assert np.corrcoef(hardened[both], warped[both])[0, 1] > 0.98


def test_cancelling_the_real_engine(scene, nodes, tmp_path):
    before = scene_state(scene)
    job = RegistrationJob(nodes["fixed"], nodes["moving"], options=RegistrationOptions(method="vsvf-opt"),
                          tempRoot=tmp_path)
    job.start()
    events, deadline = [], time.monotonic() + 60
    while not events and time.monotonic() < deadline:
        job.poll(progress=lambda *event: events.append(event))
        time.sleep(0.05)
    assert events and job.running
    started = time.monotonic()
    job.cancel()
    assert time.monotonic() - started < 2.0
    with pytest.raises(RegistrationCancelled):
        job.finish()
    assert scene_state(scene) == before
    assert os.listdir(tmp_path) == []


def test_engine_refusal_is_a_clear_message_and_creates_nothing(scene, nodes, tmp_path):
    before = scene_state(scene)
    with pytest.raises(RegistrationInputError, match="model"):
        register_volumes(nodes["fixed"], nodes["moving"], method="vsvf-opt", model="avsm-brain", tempRoot=tmp_path)
    assert scene_state(scene) == before
    assert os.listdir(tmp_path) == []


def test_background_command_line_run_loads_every_output(scene, nodes, tmp_path):
    """The panel's path: inputs written to files, `python -m avsm register --progress json`, files read back."""
    events = []
    result = register_volumes(nodes["fixed"], nodes["moving"], method="affine", movingLabels=nodes["movingLabels"],
                              fixedLabels=nodes["fixedLabels"], background=True, tempRoot=tmp_path, affineSteps=20,
                              progress=lambda *event: events.append(event))
    assert events and events[-1][1] == pytest.approx(1.0)
    assert len(result.nodes()) == 6 and result.affine.IsLinear()
    assert result.report["method"] == "affine" and result.report["dice_mean"] > 0.5
    assert same_grid(result.jacobian, nodes["fixed"]) and same_grid(result.warpedLabels, nodes["fixed"])
    warped = slicer.util.arrayFromVolume(result.warped)
    hardened = harden_copy_on_fixed_grid(scene, nodes["moving"], result.transform, nodes["fixed"])
    inside = (warped > 0.05 * warped.max()) & (hardened > 0.05 * warped.max())
    assert np.corrcoef(hardened[inside], warped[inside])[0, 1] > 0.98
    assert os.listdir(tmp_path) == []


def test_device_choice_is_described_for_the_log():
    from AVSMRegistrationLib.engine import describe_device
    import torch
    assert describe_device("cpu") == "CPU (chosen)"
    expected = "GPU: " if torch.cuda.is_available() else "CPU (no CUDA GPU found)"
    assert describe_device("auto").startswith(expected)

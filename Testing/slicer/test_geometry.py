"""RAS (Slicer) <-> LPS (ITK) conversion of volume nodes, checked against Slicer's own file reader."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import slicer

from AVSMRegistrationLib.geometry import (LPS_FROM_RAS, ijk_to_ras, image_from_volume, same_grid,
                                          update_volume_from_image)
from slicer_test_support import add_volume, downsample, scene_state


def oblique(image: sitk.Image) -> sitk.Image:
    """The same voxels on an oblique, anisotropic grid (rotated about a tilted axis)."""
    result = sitk.Image(image)
    rotation = sitk.VersorTransform((0.3, -0.5, 0.8), 0.35).GetMatrix()
    result.SetDirection(rotation)
    result.SetSpacing((3.0, 2.5, 3.5))
    result.SetOrigin((12.5, -40.0, 7.25))
    return result


def test_volume_read_by_slicer_converts_to_the_same_lps_geometry(scene, malf_pair, tmp_path):
    image = oblique(malf_pair[1])
    path = tmp_path / "oblique.nrrd"
    sitk.WriteImage(image, str(path))
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "oblique")
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(node)

    converted = image_from_volume(node)

    np.testing.assert_allclose(converted.GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(converted.GetSpacing(), image.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(converted.GetDirection(), image.GetDirection(), atol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(converted), sitk.GetArrayFromImage(image))


def test_node_written_from_image_matches_slicer_geometry(scene, malf_pair):
    image = oblique(malf_pair[0])
    node = add_volume(scene, image, "oblique")
    matrix = ijk_to_ras(node)
    # voxel (i, j, k) = (5, 7, 3): physical point from ITK (LPS) flipped to RAS equals IJKToRAS * ijk
    lps = np.array(image.TransformIndexToPhysicalPoint((5, 7, 3)))
    np.testing.assert_allclose(matrix @ [5, 7, 3, 1], [*(LPS_FROM_RAS @ lps), 1.0], atol=1e-6)


def test_export_leaves_the_node_untouched(scene, malf_pair):
    node = add_volume(scene, malf_pair[0], "fixed")
    before = scene_state(scene)
    image_from_volume(node)
    assert scene_state(scene) == before
    assert node.GetStorageNode() is None


def test_same_grid_tells_grids_apart(scene, malf_pair):
    a = add_volume(scene, malf_pair[0], "a")
    b = add_volume(scene, malf_pair[2], "labels")  # same grid, other voxels
    c = add_volume(scene, downsample(malf_pair[0], 4.0), "coarser")
    shifted = sitk.Image(malf_pair[0])
    shifted.SetOrigin(np.add(shifted.GetOrigin(), (0.0, 0.0, 1.0)).tolist())
    d = add_volume(scene, shifted, "shifted")
    assert same_grid(a, b)
    assert not same_grid(a, c)
    assert not same_grid(a, d)


def test_round_trip_keeps_voxels_and_geometry(scene, malf_pair):
    image = oblique(malf_pair[0])
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "roundtrip")
    update_volume_from_image(node, image)
    back = image_from_volume(node)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-9)
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-9)

"""RAS (Slicer) <-> LPS (ITK) conversion of volume nodes, checked against Slicer's own file reader."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicer

from AVSMRegistrationLib.geometry import (LPS_FROM_RAS, ijk_to_ras, image_from_volume, same_grid,
                                          update_volume_from_image)
from slicer_test_support import SAMPLE_DATA, add_volume, data_file, downsample, scene_state


def oblique(image: sitk.Image) -> sitk.Image:
    """The same voxels on an oblique, anisotropic grid (rotated about a tilted axis)."""
    result = sitk.Image(image)
    rotation = sitk.VersorTransform((0.3, -0.5, 0.8), 0.35).GetMatrix()
    result.SetDirection(rotation)
    result.SetSpacing((3.0, 2.5, 3.5))
    result.SetOrigin((12.5, -40.0, 7.25))
    return result


def test_volume_read_by_slicer_converts_to_the_same_lps_geometry(scene, demo_pair, tmp_path):
    image = oblique(demo_pair[1])
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


@pytest.mark.parametrize("source", ["bundled IXI002 T1 (native oblique)", "open_ms patient12 study2 T1W (oblique raw)"])
def test_oblique_file_read_by_slicer_has_the_simpleitk_geometry(scene, source):
    """A real oblique scan read by Slicer's own reader: the node converts to the file's LPS geometry."""
    if source.startswith("bundled"):
        path = SAMPLE_DATA / "moving_t1_2mm.nii.gz"
    else:
        path = data_file("open_ms_lesjak", "longitudinal_raw", "patient12", "study2_T1W.nii.gz")
    reference = sitk.ReadImage(str(path))
    assert not np.allclose(reference.GetDirection(), np.eye(3).ravel(), atol=1e-3)  # really oblique
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "oblique scan")
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(node)

    converted = image_from_volume(node)

    # Slicer may store the slices in the other order (it makes a left-handed NIfTI frame right-handed,
    # as for the bundled file), so compare in physical space: same voxel centres, same values there.
    assert converted.GetSize() == reference.GetSize()
    np.testing.assert_allclose(converted.GetSpacing(), reference.GetSpacing(), atol=1e-4)
    corners = [[i * (n - 1) for i, n in zip(corner, reference.GetSize())] for corner in np.ndindex(2, 2, 2)]
    for corner in corners:
        index = converted.TransformPhysicalPointToContinuousIndex(reference.TransformIndexToPhysicalPoint(corner))
        np.testing.assert_allclose(index, np.round(index), atol=1e-3)
    on_reference = sitk.Resample(converted, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                 reference.GetPixelID())
    np.testing.assert_array_equal(sitk.GetArrayFromImage(on_reference), sitk.GetArrayFromImage(reference))
    # and Slicer's IJKToRAS agrees with the converted image's LPS geometry
    lps = np.array(converted.TransformIndexToPhysicalPoint((10, 20, 5)))
    np.testing.assert_allclose(ijk_to_ras(node) @ [10, 20, 5, 1], [*(LPS_FROM_RAS @ lps), 1.0], atol=1e-3)


def test_node_written_from_image_matches_slicer_geometry(scene, demo_pair):
    image = oblique(demo_pair[0])
    node = add_volume(scene, image, "oblique")
    matrix = ijk_to_ras(node)
    # voxel (i, j, k) = (5, 7, 3): physical point from ITK (LPS) flipped to RAS equals IJKToRAS * ijk
    lps = np.array(image.TransformIndexToPhysicalPoint((5, 7, 3)))
    np.testing.assert_allclose(matrix @ [5, 7, 3, 1], [*(LPS_FROM_RAS @ lps), 1.0], atol=1e-6)


def test_export_leaves_the_node_untouched(scene, demo_pair):
    node = add_volume(scene, demo_pair[0], "fixed")
    before = scene_state(scene)
    image_from_volume(node)
    assert scene_state(scene) == before
    assert node.GetStorageNode() is None


def test_same_grid_tells_grids_apart(scene, demo_pair):
    a = add_volume(scene, demo_pair[0], "a")
    b = add_volume(scene, demo_pair[2], "labels")  # same grid, other voxels
    c = add_volume(scene, downsample(demo_pair[0], 6.0), "coarser")
    shifted = sitk.Image(demo_pair[0])
    shifted.SetOrigin(np.add(shifted.GetOrigin(), (0.0, 0.0, 1.0)).tolist())
    d = add_volume(scene, shifted, "shifted")
    assert same_grid(a, b)
    assert not same_grid(a, c)
    assert not same_grid(a, d)


def test_round_trip_keeps_voxels_and_geometry(scene, demo_pair):
    image = oblique(demo_pair[0])
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "roundtrip")
    update_volume_from_image(node, image)
    back = image_from_volume(node)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-9)
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-9)

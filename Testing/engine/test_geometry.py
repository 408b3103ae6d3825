"""Coordinate conventions against SimpleITK's own index <-> physical conversions."""
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from avsm.geometry import (Grid, axis_aligned_grid_covering, coarser_grid, physical_points, physical_to_normalised,
                           sampling_grid)
from avsm.maps import sample


def test_physical_points_match_simpleitk_on_an_oblique_anisotropic_grid(oblique_image):
    grid = Grid.of_image(oblique_image)
    points = physical_points(grid, dtype=torch.float64)[0]
    for index_xyz in [(0, 0, 0), (23, 0, 0), (0, 19, 0), (0, 0, 15), (7, 11, 3), (23, 19, 15)]:
        expected = oblique_image.TransformIndexToPhysicalPoint(index_xyz)
        got = points[:, index_xyz[2], index_xyz[1], index_xyz[0]].numpy()
        np.testing.assert_allclose(got, expected, atol=1e-9)


def test_identity_map_samples_the_image_itself(oblique_image):
    grid = Grid.of_image(oblique_image)
    tensor = torch.from_numpy(sitk.GetArrayFromImage(oblique_image)).double()[None, None]
    sampled = sample(tensor, grid, physical_points(grid, dtype=torch.float64))
    assert torch.allclose(sampled, tensor, atol=1e-9)


def test_normalised_coordinates_put_corner_voxels_at_plus_minus_one(oblique_image):
    grid = Grid.of_image(oblique_image)
    normalised = physical_to_normalised(physical_points(grid, dtype=torch.float64), grid)
    assert torch.allclose(normalised[0, 0, 0, 0], torch.tensor([-1.0, -1.0, -1.0], dtype=torch.float64))
    assert torch.allclose(normalised[0, -1, -1, -1], torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64))


def test_sampling_grid_equals_normalised_physical_points_between_oblique_and_aligned_grids(oblique_image):
    oblique = Grid.of_image(oblique_image)
    aligned = axis_aligned_grid_covering(oblique, 2.5)
    for target, source in ((oblique, aligned), (aligned, oblique), (oblique, oblique)):
        expected = physical_to_normalised(physical_points(target, dtype=torch.float64), source)
        got = sampling_grid(target, source, dtype=torch.float64)
        torch.testing.assert_close(got, expected, atol=1e-9, rtol=0)


@pytest.mark.parametrize("multiple", [1, 8])
def test_axis_aligned_working_grid_covers_every_voxel_centre(oblique_image, multiple):
    grid = Grid.of_image(oblique_image)
    working = axis_aligned_grid_covering(grid, 2.0, multiple=multiple)
    assert all(n % multiple == 0 for n in working.shape)
    corners = grid.corners_physical()
    low = np.array(working.origin)
    high = low + (np.array(working.size_xyz) - 1) * 2.0
    assert (corners >= low - 1e-9).all() and (corners <= high + 1e-9).all()


def test_coarser_grid_keeps_the_corner_voxel_centres():
    grid = Grid(shape=(41, 50, 33), spacing=(1.0, 1.0, 1.0), origin=(3.0, 4.0, 5.0), direction=tuple(np.eye(3).ravel()))
    coarse = coarser_grid(grid, 2.0)
    np.testing.assert_allclose(coarse.corners_physical().min(0), grid.corners_physical().min(0))
    np.testing.assert_allclose(coarse.corners_physical().max(0), grid.corners_physical().max(0))
    assert coarse.shape == (21, 25, 17)

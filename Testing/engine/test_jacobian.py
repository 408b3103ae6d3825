"""det J: full 3x3 determinant in physical units, against analytic maps."""
import numpy as np
import torch

from avsm.geometry import Grid, physical_points
from avsm.jacobian import det_jacobian, det_jacobian_at_cell_corners, fold_mask

from engine_fixtures import oblique_direction


def test_det_of_an_affine_map_is_det_a_on_an_oblique_anisotropic_grid():
    grid = Grid(shape=(10, 12, 9), spacing=(0.9, 1.3, 2.1), origin=(4.0, -2.0, 1.0), direction=oblique_direction(30.0))
    identity = physical_points(grid, dtype=torch.float64)
    matrix = torch.tensor([[1.2, 0.3, 0.0], [0.1, 0.8, 0.2], [0.0, -0.4, 1.1]], dtype=torch.float64)
    phi = torch.einsum("ij,bjdhw->bidhw", matrix, identity)
    det = det_jacobian(phi, grid)
    assert torch.allclose(det, torch.full_like(det, float(torch.linalg.det(matrix))), atol=1e-10)
    corners = det_jacobian_at_cell_corners(phi, grid)
    assert corners.shape == (1, 8, 9, 11, 8)
    assert torch.allclose(corners, torch.full_like(corners, float(torch.linalg.det(matrix))), atol=1e-10)


def test_det_of_an_analytic_nonlinear_map_matches_to_1e_3():
    grid = Grid(shape=(40, 40, 40), spacing=(0.5, 0.5, 0.5), origin=(0.0, 0.0, 0.0), direction=tuple(np.eye(3).ravel()))
    p = physical_points(grid, dtype=torch.float64)
    x, y, z = p[:, 0:1], p[:, 1:2], p[:, 2:3]
    a, k = 0.8, 0.3
    # phi = (x + a sin(k y), y + a sin(k z), z + a sin(k x)): det = 1 + a^3 k^3 cos(ky) cos(kz) cos(kx)
    phi = torch.cat([x + a * torch.sin(k * y), y + a * torch.sin(k * z), z + a * torch.sin(k * x)], dim=1)
    expected = 1 + (a * k) ** 3 * torch.cos(k * y) * torch.cos(k * z) * torch.cos(k * x)
    det = det_jacobian(phi, grid)
    interior = (slice(None), slice(None), slice(1, -1), slice(1, -1), slice(1, -1))
    assert float((det[interior] - expected[interior]).abs().max()) < 1e-3


def test_full_determinant_sees_a_fold_that_the_diagonal_product_misses():
    grid = Grid(shape=(8, 8, 8), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=tuple(np.eye(3).ravel()))
    p = physical_points(grid, dtype=torch.float64)
    # J = [[1, 2, 0], [2, 1, 0], [0, 0, 1]]: diagonal product 1 > 0 but det = -3
    matrix = torch.tensor([[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    det = det_jacobian(torch.einsum("ij,bjdhw->bidhw", matrix, p), grid)
    assert torch.allclose(det, torch.full_like(det, -3.0))
    assert bool(fold_mask(det).all())


def _det_by_torch_gradient(phi, grid):
    """The textbook rule, independent of the blocked implementation: torch.gradient then a 3x3 det per voxel."""
    from avsm.geometry import spatial_derivative_matrix

    columns = torch.gradient(phi, dim=(4, 3, 2), edge_order=1)  # d/di_x, d/di_y, d/di_z
    jac = torch.stack(columns, dim=-1).permute(0, 2, 3, 4, 1, 5)  # B x D x H x W x 3 (component) x 3 (index)
    return torch.linalg.det(jac)[:, None] * float(np.linalg.det(spatial_derivative_matrix(grid)))


def test_blocked_det_equals_torch_gradient_rule_on_a_random_map_with_thin_axes(monkeypatch):
    import avsm.jacobian as jacobian

    monkeypatch.setattr(jacobian, "BLOCK_VOXELS", 2 * 5)  # one D-slice (H x W = 2 x 5) per block
    grid = Grid(shape=(6, 2, 5), spacing=(0.7, 1.9, 1.1), origin=(1.0, 2.0, -3.0), direction=oblique_direction(20.0))
    generator = torch.Generator().manual_seed(3)
    phi = physical_points(grid, dtype=torch.float64) + 0.4 * torch.randn((2, 3, 6, 2, 5), generator=generator, dtype=torch.float64)
    assert torch.allclose(det_jacobian(phi, grid), _det_by_torch_gradient(phi, grid), atol=1e-12)
    monkeypatch.setattr(jacobian, "BLOCK_VOXELS", 10**6)  # one block for the whole volume
    assert torch.allclose(det_jacobian(phi, grid), _det_by_torch_gradient(phi, grid), atol=1e-12)


def test_det_refuses_a_map_with_a_single_slice():
    import pytest

    grid = Grid(shape=(1, 4, 4), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=tuple(np.eye(3).ravel()))
    with pytest.raises(ValueError, match="D, H, W >= 2"):
        det_jacobian(physical_points(grid), grid)


def test_det_at_cell_corners_is_that_of_the_trilinear_interpolant_just_inside_each_corner():
    from avsm.maps import sample

    grid = Grid(shape=(4, 5, 4), spacing=(2.0, 1.5, 1.0), origin=(1.0, -3.0, 2.0), direction=oblique_direction(25.0))
    generator = torch.Generator().manual_seed(1)
    phi = physical_points(grid, dtype=torch.float64) + 0.4 * torch.randn((1, 3, 4, 5, 4), generator=generator,
                                                                           dtype=torch.float64)
    corners = det_jacobian_at_cell_corners(phi, grid)
    index_to_physical = torch.as_tensor(grid.index_to_physical_matrix(), dtype=torch.float64)
    step, inside = 1e-6, 1e-4  # finite differences of the interpolant, a little inside the cell from the corner
    for corner, (k, j, i) in enumerate((k, j, i) for k in (0, 1) for j in (0, 1) for i in (0, 1)):
        for cell in ((0, 0, 0), (2, 3, 1), (1, 2, 2)):  # (z, y, x) index of the cell's first corner
            index = torch.tensor([cell[2] + i + (inside if i == 0 else -inside), cell[1] + j + (inside if j == 0 else -inside),
                                  cell[0] + k + (inside if k == 0 else -inside)], dtype=torch.float64)
            jacobian = torch.empty(3, 3, dtype=torch.float64)
            for axis in range(3):  # derivative along physical axis x, y, z
                offset = torch.zeros(3, dtype=torch.float64)
                offset[axis] = step
                centre = index_to_physical[:3, :3] @ index + index_to_physical[:3, 3]
                points = torch.stack([centre + offset, centre - offset]).T.reshape(1, 3, 2, 1, 1)
                values = sample(phi, grid, points, padding_mode="border")[0, :, :, 0, 0]
                jacobian[:, axis] = (values[:, 0] - values[:, 1]) / (2 * step)
            expected = float(torch.linalg.det(jacobian))
            assert abs(float(corners[0, corner][cell]) - expected) < 1e-3 * max(1.0, abs(expected)), (corner, cell)

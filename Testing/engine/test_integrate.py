"""vSVF advection and scaling and squaring against closed-form flows."""
import numpy as np
import torch

from avsm.geometry import Grid, physical_points
from avsm.integrate import advect_map, flow_maps, scaling_and_squaring
from avsm.maps import compose

GRID = Grid(shape=(20, 24, 18), spacing=(2.0, 1.5, 2.5), origin=(-20.0, -18.0, -22.0), direction=tuple(np.eye(3).ravel()))


def _interior(t, m=3):
    return t[..., m:-m, m:-m, m:-m]


def test_constant_velocity_gives_a_translation_and_its_inverse():
    identity = physical_points(GRID, dtype=torch.float64)
    v = torch.tensor([1.5, -2.0, 0.7], dtype=torch.float64).view(1, 3, 1, 1, 1) * torch.ones_like(identity)
    forward, inverse = flow_maps(v, GRID, steps=10)
    # phi(1) = id ∘ psi^{-1}: psi is x + v, so psi^{-1} is x - v
    assert torch.allclose(forward, identity - v, atol=1e-9)
    assert torch.allclose(inverse, identity + v, atol=1e-9)


def test_linear_velocity_matches_the_matrix_exponential():
    identity = physical_points(GRID, dtype=torch.float64)
    rate = 0.3  # v(x) = rate * x, flow psi_t(x) = exp(rate t) x
    v = rate * identity
    forward = advect_map(identity, v, GRID, steps=10)
    assert torch.allclose(forward, np.exp(-rate) * identity, atol=1e-5)


def test_advection_from_an_affine_map_composes_on_the_fixed_side():
    identity = physical_points(GRID, dtype=torch.float64)
    matrix = torch.tensor([[1.1, 0.05, 0.0], [0.0, 0.95, 0.1], [0.02, 0.0, 1.0]], dtype=torch.float64)
    affine = torch.einsum("ij,bjdhw->bidhw", matrix, identity) + torch.tensor([3.0, -2.0, 1.0], dtype=torch.float64).view(1, 3, 1, 1, 1)
    v = torch.tensor([1.0, 0.5, -0.5], dtype=torch.float64).view(1, 3, 1, 1, 1) * torch.ones_like(identity)
    advected = advect_map(affine, v, GRID, steps=10)
    expected = torch.einsum("ij,bjdhw->bidhw", matrix, identity - v) + torch.tensor([3.0, -2.0, 1.0], dtype=torch.float64).view(1, 3, 1, 1, 1)
    assert torch.allclose(advected, expected, atol=1e-9)


def test_forward_and_inverse_flows_compose_to_the_identity():
    identity = physical_points(GRID, dtype=torch.float64)
    z = identity[:, 2:3]
    y = identity[:, 1:2]
    v = torch.cat([2.0 * torch.sin(z / 8.0), 1.5 * torch.cos(y / 10.0), torch.zeros_like(z)], dim=1)
    forward, inverse = flow_maps(v, GRID, steps=20)
    residual = (_interior(compose(forward, GRID, inverse), 4) - _interior(identity, 4)).abs().max()
    assert float(residual) < 0.05  # mm, with displacements of about 2 mm


def test_scaling_and_squaring_of_a_constant_field_is_the_translation():
    identity = physical_points(GRID, dtype=torch.float64)
    v = torch.tensor([0.8, -1.2, 0.4], dtype=torch.float64).view(1, 3, 1, 1, 1) * torch.ones_like(identity)
    assert torch.allclose(scaling_and_squaring(v, GRID, steps=7), identity + v, atol=1e-9)


def test_advection_gradient_passes_gradcheck():
    grid = Grid(shape=(4, 5, 4), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=tuple(np.eye(3).ravel()))
    identity = physical_points(grid, dtype=torch.float64)
    v = (0.1 * torch.randn((1, 3, 4, 5, 4), dtype=torch.float64, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda vel: advect_map(identity, vel, grid, steps=3), (v,))

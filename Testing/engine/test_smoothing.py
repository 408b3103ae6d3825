"""The multi-Gaussian smoother against the analytic Gaussian."""
import numpy as np
import torch

from avsm.geometry import Grid
from avsm.smoothing import MultiGaussianSmoother, default_sigmas_mm

GRID = Grid(shape=(40, 48, 36), spacing=(2.0, 2.0, 2.0), origin=(0.0, 0.0, 0.0), direction=tuple(np.eye(3).ravel()))


def _impulse():
    field = torch.zeros((1, 1, *GRID.shape), dtype=torch.float64)
    field[0, 0, 20, 24, 18] = 1.0
    return field


def test_a_single_gaussian_reproduces_the_sampled_normalised_gaussian():
    sigma = 5.0
    smoothed = MultiGaussianSmoother(GRID, [sigma], truncate=4.0)(_impulse())[0, 0]
    z, y, x = np.meshgrid(*(np.arange(n) for n in GRID.shape), indexing="ij")
    dist2 = ((z - 20) ** 2 + (y - 24) ** 2 + (x - 18) ** 2) * 4.0
    radius = 10  # ceil(4 sigma / spacing): the kernel is truncated to a cube of this radius in voxels
    inside = (abs(z - 20) <= radius) & (abs(y - 24) <= radius) & (abs(x - 18) <= radius)
    analytic = np.exp(-dist2 / (2 * sigma**2)) * inside
    analytic /= analytic.sum()
    np.testing.assert_allclose(smoothed.numpy(), analytic, atol=1e-12)


def test_kernel_has_unit_gain_and_is_symmetric():
    smoother = MultiGaussianSmoother(GRID, [3.0, 6.0, 9.0], [1.0, 2.0, 3.0])
    smoothed = smoother(_impulse())[0, 0]
    assert abs(float(smoothed.sum()) - 1.0) < 1e-9  # support (27 mm) inside the domain
    assert torch.allclose(smoothed[20, 24, 18 - 5], smoothed[20, 24, 18 + 5], atol=1e-12)
    assert torch.allclose(smoothed[20 - 5, 24, 18], smoothed[20 + 5, 24, 18], atol=1e-12)


def test_convolution_does_not_wrap_around_the_domain():
    field = torch.zeros((1, 1, *GRID.shape), dtype=torch.float64)
    field[0, 0, 0, 24, 18] = 1.0
    smoothed = MultiGaussianSmoother(GRID, [6.0])(field)[0, 0]
    assert abs(float(smoothed[-1, 24, 18])) < 1e-9  # FFT round-off only; a periodic kernel gives ~1e-3


def test_default_sigmas_are_the_paper_fractions_of_the_domain():
    sigmas = default_sigmas_mm(GRID)
    extent = ((36 - 1) * 2 + (48 - 1) * 2 + (40 - 1) * 2) / 3
    np.testing.assert_allclose(sigmas, [f * extent for f in (0.05, 0.1, 0.15, 0.2, 0.25)])


def test_fft_lengths_have_no_prime_factor_above_5_and_do_not_change_the_convolution():
    from avsm import smoothing

    assert [smoothing.fft_size(n) for n in (43, 44, 45, 49, 67, 97, 1, 2)] == [45, 45, 45, 50, 72, 100, 1, 2]
    grid = Grid(shape=(33, 39, 32), spacing=(5.0, 5.0, 5.0), origin=(0.0, 0.0, 0.0), direction=tuple(np.eye(3).ravel()))
    generator = torch.Generator().manual_seed(2)
    momentum = torch.randn((1, 3, *grid.shape), generator=generator, dtype=torch.float64)
    smoother = MultiGaussianSmoother(grid, [4.0, 9.0, 17.0], [1.0, 2.0, 3.0])
    assert smoother.padded == (45, 50, 45)  # 33 + 11, 39 + 11, 32 + 11 raised to fast lengths
    original = smoothing.fft_size
    try:
        smoothing.fft_size = lambda n: n  # the shortest padding: the kernel's radius alone
        shortest = MultiGaussianSmoother(grid, [4.0, 9.0, 17.0], [1.0, 2.0, 3.0])
    finally:
        smoothing.fft_size = original
    assert shortest.padded == (44, 50, 43)
    torch.testing.assert_close(smoother(momentum), shortest(momentum), atol=1e-12, rtol=0)

"""avsm.preprocess: resampling onto working grids against ITK's own blur and resampling."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch

from avsm.geometry import Grid, axis_aligned_grid_covering, image_to_tensor
from avsm.preprocess import _separable_resampling, resample_to_grid

from engine_fixtures import oblique_direction

# the image's axes swapped and flipped against LPS: separable onto an LPS-aligned grid
PERMUTED = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


def _image(direction, spacing=(0.9, 1.2, 1.0), size=(40, 33, 36)) -> sitk.Image:
    rng = np.random.default_rng(0)
    smooth = sitk.SmoothingRecursiveGaussian(sitk.GetImageFromArray(rng.random(size[::-1]).astype(np.float32)), 1.5)
    image = sitk.RescaleIntensity(smooth, 0.0, 1.0)
    image.SetSpacing(spacing)
    image.SetOrigin((12.0, -7.0, 30.0))
    image.SetDirection(direction)
    return image


def _itk(image: sitk.Image, grid: Grid, sigmas_mm) -> torch.Tensor:
    """ITK's recursive Gaussian (edge voxels extended, as ours) and linear resampling with 0 outside."""
    blurred = sitk.SmoothingRecursiveGaussian(image, list(sigmas_mm)) if max(sigmas_mm) > 0 else image
    return image_to_tensor(sitk.Resample(blurred, grid.reference_image(), sitk.Transform(), sitk.sitkLinear, 0.0,
                                         sitk.sitkFloat32))


def test_separable_resampling_matches_itk_without_a_blur_including_the_zeros_outside():
    image = _image(PERMUTED)
    grid = axis_aligned_grid_covering(Grid.of_image(image), 2.3, margin_mm=4.0)  # reaches beyond the image
    ours = _separable_resampling(image, grid, [0.0, 0.0, 0.0])
    expected = _itk(image, grid, [0.0, 0.0, 0.0])
    assert ours.shape == expected.shape and ours.dtype == torch.float32
    assert (expected == 0).any() and torch.equal(ours == 0, expected == 0)
    assert float((ours - expected).abs().max()) < 1e-5


def test_separable_resampling_blurs_as_itk_does_on_an_anisotropic_permuted_image():
    image = _image(PERMUTED)
    grid = axis_aligned_grid_covering(Grid.of_image(image), 2.5)
    sigmas = [0.5 * float(np.sqrt(2.5**2 - s**2)) for s in image.GetSpacing()]
    ours = resample_to_grid(image, grid)
    expected = _itk(image, grid, sigmas)
    assert float((ours - expected).abs().max()) < 3e-3  # ITK's filter approximates the Gaussian (Deriche's IIR)
    unblurred = _itk(image, grid, [0.0, 0.0, 0.0])
    assert float((unblurred - expected).abs().max()) > 10 * float((ours - expected).abs().max())


def test_an_image_oblique_to_the_grid_is_resampled_by_itk():
    image = _image(oblique_direction(25.0))
    grid = axis_aligned_grid_covering(Grid.of_image(image), 2.5)
    assert _separable_resampling(image, grid, [1.0, 1.0, 1.0]) is None
    ours = resample_to_grid(image, grid, antialias=False)
    assert torch.allclose(ours, _itk(image, grid, [0.0, 0.0, 0.0]), atol=1e-6)

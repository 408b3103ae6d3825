"""Warping and composition against closed forms and SimpleITK resampling."""
import numpy as np
import SimpleITK as sitk
import torch

from avsm.geometry import Grid, physical_points
from avsm.geometry import physical_to_normalised
from avsm.maps import (affine_map, apply_affine, compose, resample_map, warp_image, warp_labels,
                       warp_labels_linear_at)

from engine_fixtures import blob_image, oblique_direction


def _tensor(image):
    return torch.from_numpy(sitk.GetArrayFromImage(image)).double()[None, None]


def _interior(a, margin=3):
    return a[..., margin:-margin, margin:-margin, margin:-margin]


def test_pure_translation_matches_simpleitk_resample():
    moving = blob_image(seed=1)
    fixed = blob_image(size=(20, 18, 14), spacing=(1.3, 1.3, 1.7), origin=(7.0, -1.0, 12.0), seed=2)
    offset = (2.3, -1.1, 3.7)
    expected = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, sitk.TranslationTransform(3, offset), sitk.sitkLinear, 0.0))
    phi = physical_points(Grid.of_image(fixed), dtype=torch.float64) + torch.tensor(offset, dtype=torch.float64).view(1, 3, 1, 1, 1)
    warped = warp_image(_tensor(moving), Grid.of_image(moving), phi)[0, 0].numpy()
    np.testing.assert_allclose(warped, expected, atol=1e-6)


def test_known_affine_between_oblique_grids_matches_simpleitk_resample():
    moving = blob_image(direction=oblique_direction(25.0), seed=3)
    fixed = blob_image(size=(18, 22, 12), spacing=(1.1, 0.9, 2.2), origin=(2.0, -8.0, 9.0),
                       direction=oblique_direction(-10.0), seed=4)
    transform = sitk.AffineTransform(3)
    matrix = np.array([[1.05, 0.08, -0.02], [-0.05, 0.95, 0.04], [0.03, 0.02, 1.1]])
    transform.SetMatrix(matrix.ravel().tolist())
    transform.SetTranslation((1.5, -2.0, 0.7))
    expected = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, transform, sitk.sitkLinear, 0.0))
    phi = affine_map(torch.tensor(matrix), torch.tensor([1.5, -2.0, 0.7], dtype=torch.float64), Grid.of_image(fixed))
    warped = warp_image(_tensor(moving), Grid.of_image(moving), phi)[0, 0].numpy()
    np.testing.assert_allclose(warped, expected, atol=1e-6)


def test_nearest_neighbour_label_warp_matches_simpleitk():
    labels = sitk.Cast(blob_image(seed=5) * 5.0, sitk.sitkUInt8)
    fixed = blob_image(size=(20, 18, 14), origin=(6.0, -2.0, 11.0), seed=6)
    offset = (1.2, 0.4, -2.2)
    expected = sitk.GetArrayFromImage(sitk.Resample(labels, fixed, sitk.TranslationTransform(3, offset), sitk.sitkNearestNeighbor, 0))
    phi = physical_points(Grid.of_image(fixed), dtype=torch.float64) + torch.tensor(offset, dtype=torch.float64).view(1, 3, 1, 1, 1)
    warped = warp_labels(_tensor(labels), Grid.of_image(labels), phi)[0, 0].numpy()
    assert (warped == expected).mean() > 0.999


def test_per_label_linear_warp_matches_simpleitk_label_linear():
    """Oblique grids, a known affine and a fixed field of view reaching past the labels (0 there, as ITK)."""
    labels = sitk.Cast(blob_image(direction=oblique_direction(20.0), seed=7) * 6.0, sitk.sitkUInt8)
    labels = sitk.Cast(labels * 7, sitk.sitkUInt8)  # label values 0, 7, 14, ... (not consecutive)
    fixed = blob_image(size=(22, 20, 14), spacing=(1.1, 0.9, 1.9), origin=(3.0, -6.0, 7.0),
                       direction=oblique_direction(-15.0), seed=8)
    matrix = np.array([[1.04, 0.07, -0.03], [-0.06, 0.96, 0.05], [0.02, 0.03, 1.08]])
    translation = (1.3, -1.7, 0.9)
    transform = sitk.AffineTransform(matrix.ravel().tolist(), translation)
    expected = sitk.GetArrayFromImage(sitk.Resample(labels, fixed, transform, sitk.sitkLabelLinear, 0))
    phi = affine_map(torch.tensor(matrix), torch.tensor(translation, dtype=torch.float64), Grid.of_image(fixed))
    coordinates = physical_to_normalised(phi, Grid.of_image(labels))
    warped = warp_labels_linear_at(_tensor(labels), coordinates)[0, 0].numpy()
    nearest = sitk.GetArrayFromImage(sitk.Resample(labels, fixed, transform, sitk.sitkNearestNeighbor, 0))
    assert len(np.unique(expected)) > 4 and (expected == 0).any() and (expected != nearest).mean() > 0.01
    assert (warped == expected).mean() > 0.999  # ties between two labels may break either way
    in_chunks = warp_labels_linear_at(_tensor(labels), coordinates, chunk_points=1000)[0, 0].numpy()
    np.testing.assert_array_equal(in_chunks, warped)


def test_per_label_linear_warp_by_the_identity_returns_the_labels():
    labels = sitk.Cast(blob_image(seed=9) * 5.0, sitk.sitkUInt8)
    grid = Grid.of_image(labels)
    coordinates = physical_to_normalised(physical_points(grid, dtype=torch.float64), grid)
    np.testing.assert_array_equal(warp_labels_linear_at(_tensor(labels), coordinates)[0, 0].numpy(),
                                  sitk.GetArrayFromImage(labels))


def test_composition_of_translations_adds_them():
    grid = Grid(shape=(12, 14, 10), spacing=(1.0, 2.0, 1.5), origin=(0.0, 0.0, 0.0), direction=tuple(np.eye(3).ravel()))
    identity = physical_points(grid, dtype=torch.float64)
    a = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64).view(1, 3, 1, 1, 1)
    b = torch.tensor([-0.3, 0.8, 0.4], dtype=torch.float64).view(1, 3, 1, 1, 1)
    composed = compose(identity + a, grid, identity + b)
    assert torch.allclose(_interior(composed), _interior(identity + a + b), atol=1e-9)


def test_resampling_an_affine_map_to_a_finer_grid_is_exact():
    coarse = Grid(shape=(6, 7, 5), spacing=(4.0, 4.0, 4.0), origin=(-10.0, -12.0, -8.0), direction=tuple(np.eye(3).ravel()))
    fine = Grid(shape=(14, 18, 12), spacing=(1.0, 1.0, 1.2), origin=(3.0, -10.0, -6.0), direction=oblique_direction(5.0))
    matrix = torch.tensor([[1.1, 0.1, 0.0], [0.0, 0.9, 0.2], [0.05, 0.0, 1.0]], dtype=torch.float64)
    shift = torch.tensor([3.0, -1.0, 2.0], dtype=torch.float64)
    upsampled = resample_map(affine_map(matrix, shift, coarse), coarse, fine)
    expected = apply_affine(matrix, shift, physical_points(fine, dtype=torch.float64))
    assert torch.allclose(upsampled, expected, atol=1e-9)


def test_upsampling_from_the_coarser_grid_equals_physical_resampling():
    from avsm.geometry import coarser_grid
    from avsm.maps import upsample_map

    fine = Grid(shape=(15, 18, 13), spacing=(2.0, 2.0, 2.0), origin=(-5.0, 3.0, 1.0), direction=tuple(np.eye(3).ravel()))
    coarse = coarser_grid(fine, 2.0)
    rng = torch.Generator().manual_seed(0)
    phi = physical_points(coarse, dtype=torch.float64) + torch.randn((1, 3, *coarse.shape), generator=rng, dtype=torch.float64)
    assert torch.allclose(upsample_map(phi, fine), resample_map(phi, coarse, fine), atol=1e-9)
    # and torch's own trilinear interpolation between corner-aligned samplings, value and gradient
    phi.requires_grad_(True)
    weight = torch.randn((1, 3, *fine.shape), generator=rng, dtype=torch.float64)
    ours = torch.autograd.grad((upsample_map(phi, fine) * weight).sum(), phi)[0]
    interpolated = torch.nn.functional.interpolate(phi, size=fine.shape, mode="trilinear", align_corners=True)
    theirs = torch.autograd.grad((interpolated * weight).sum(), phi)[0]
    assert torch.allclose(upsample_map(phi, fine), interpolated, atol=1e-9) and torch.allclose(ours, theirs, atol=1e-9)


def _grid_sample_reference(phi, phi_grid, target_grid):
    import torch.nn.functional as F

    from avsm.geometry import sampling_grid

    coordinates = sampling_grid(target_grid, phi_grid, dtype=phi.dtype).expand(phi.shape[0], -1, -1, -1, -1)
    return F.grid_sample(phi, coordinates, mode="bilinear", padding_mode="border", align_corners=True)


def test_separable_map_resampling_equals_grid_sample_for_flipped_and_permuted_axes():
    import avsm.maps as maps

    generator = torch.Generator().manual_seed(5)
    source = Grid(shape=(7, 9, 8), spacing=(3.0, 2.5, 3.5), origin=(-10.0, -12.0, -9.0), direction=tuple(np.eye(3).ravel()))
    phi = torch.randn((2, 3, 7, 9, 8), generator=generator, dtype=torch.float64)
    flipped = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)  # a NIfTI stored RAS, read as LPS
    permuted = (0.0, 0.0, 1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # index x runs along -y, y along z, z along x
    for direction, origin in ((tuple(np.eye(3).ravel()), (-14.0, -15.0, -12.0)),  # reaches past the source: border
                              (flipped, (-8.0, 10.0, -7.0)), (permuted, (-5.0, 6.0, -4.0))):
        target = Grid(shape=(13, 11, 12), spacing=(1.1, 1.7, 0.9), origin=origin, direction=direction)
        assert maps.axis_interpolation_matrices(source, target, torch.float64, "cpu") is not None
        got = resample_map(phi, source, target)
        assert got.shape == (2, 3, 13, 11, 12)
        assert torch.allclose(got, _grid_sample_reference(phi, source, target), atol=1e-12)
    oblique = Grid(shape=(13, 11, 12), spacing=(1.1, 1.7, 0.9), origin=(-5.0, -6.0, -4.0), direction=oblique_direction(25.0))
    assert maps.axis_interpolation_matrices(source, oblique, torch.float64, "cpu") is None  # grid_sample path
    assert torch.allclose(resample_map(phi, source, oblique), _grid_sample_reference(phi, source, oblique), atol=1e-12)
    single = Grid(shape=(1, 9, 8), spacing=(3.0, 2.5, 3.5), origin=(-10.0, -12.0, -9.0), direction=tuple(np.eye(3).ravel()))
    thin = resample_map(phi[:, :, :1], single, Grid(shape=(3, 5, 4), spacing=(1.0, 1.0, 1.0), origin=(-9.0, -11.0, -8.0),
                                                     direction=tuple(np.eye(3).ravel())))
    assert thin.shape == (2, 3, 3, 5, 4) and torch.allclose(thin[:, :, 0], thin[:, :, 2])  # one source slice: constant in z
    shifted = Grid(shape=(13, 11, 12), spacing=(1.1, 1.7, 0.9), origin=(-13.0, -15.0, -12.0), direction=tuple(np.eye(3).ravel()))
    unshifted = Grid(shape=(13, 11, 12), spacing=(1.1, 1.7, 0.9), origin=(-14.0, -15.0, -12.0), direction=tuple(np.eye(3).ravel()))
    assert not torch.allclose(resample_map(phi, source, shifted), _grid_sample_reference(phi, source, unshifted), atol=1e-3)


def test_grid_sample_shared_out_over_threads_gives_torchs_values_and_gradients():
    import torch.nn.functional as F

    from avsm import maps

    generator = torch.Generator().manual_seed(3)
    source = torch.rand((1, 2, 9, 11, 10), generator=generator, dtype=torch.float64).requires_grad_(True)
    shape = (1, 41, 37, 23, 3)  # 34,891 points: not a multiple of the thread count, two chunks at 2 threads
    coordinates = (2.4 * torch.rand(shape, generator=generator, dtype=torch.float64) - 1.2).requires_grad_(True)
    weight = torch.rand((1, 2, *shape[1:4]), generator=generator, dtype=torch.float64)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(threads, 2))
    try:
        for mode, padding in (("bilinear", "border"), ("bilinear", "zeros"), ("nearest", "zeros")):
            ours = maps.grid_sample(source, coordinates, mode, padding)
            theirs = F.grid_sample(source, coordinates, mode=mode, padding_mode=padding, align_corners=True)
            assert torch.equal(ours, theirs)
            if mode == "bilinear":
                grads = torch.autograd.grad((ours * weight).sum(), (source, coordinates))
                expected = torch.autograd.grad((theirs * weight).sum(), (source, coordinates))
                assert all(torch.allclose(a, b, rtol=1e-12, atol=1e-12) for a, b in zip(grads, expected))
    finally:
        torch.set_num_threads(threads)


def test_affine_after_map_applies_the_pullback_map_first_then_the_affine():
    """A psi^{-1}(x) + b at points inside the map's grid, psi^{-1} a translation by t0: A (x + t0) + b exactly
    (trilinear interpolation of an affine field is exact); without a map, A x + b."""
    from avsm.maps import affine_after_map

    map_grid = Grid(shape=(8, 9, 7), spacing=(3.0, 2.0, 2.5), origin=(-10.0, -8.0, -6.0),
                    direction=oblique_direction(15.0))
    shift = torch.tensor([1.5, -2.0, 0.5]).reshape(1, 3, 1, 1, 1)
    pullback = physical_points(map_grid) + shift
    # between the map's voxel centres, away from its faces
    points = physical_points(map_grid)[:, :, 2:-2, 2:-2, 2:-2] + torch.tensor([0.7, -0.4, 0.3]).reshape(1, 3, 1, 1, 1)
    matrix = torch.tensor([[1.1, 0.1, 0.0], [-0.05, 0.95, 0.2], [0.0, 0.1, 1.05]])
    translation = torch.tensor([4.0, -1.0, 2.5])
    assert torch.allclose(affine_after_map(matrix, translation, points), apply_affine(matrix, translation, points))
    composed = affine_after_map(matrix, translation, points, pullback, map_grid)
    assert torch.allclose(composed, apply_affine(matrix, translation, points + shift), atol=1e-4)

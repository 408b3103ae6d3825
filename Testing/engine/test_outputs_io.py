"""Output writers and preprocessing filters: the stored-gzip det J file, the overview figure, the blur."""
import gzip

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from avsm.imageio import write_stored_gzip
from avsm.preprocess import gaussian_blur
from avsm.visualise import GRID_COLOUR, _det_colours, _iso_lines, save_overview


def test_stored_gzip_nifti_reads_back_bit_exact_with_its_geometry(tmp_path):
    array = np.random.default_rng(0).normal(1.0, 0.2, (7, 8, 9)).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.9, 1.1, 2.5))
    image.SetOrigin((10.0, -4.0, 3.0))
    image.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    path = tmp_path / "jacobian.nii.gz"
    write_stored_gzip(image, path)
    assert gzip.open(path).read(4)  # a real gzip stream
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jacobian.nii.gz"]  # the plain .nii is gone
    back = sitk.ReadImage(str(path))
    assert np.array_equal(sitk.GetArrayFromImage(back), array)
    assert np.allclose(back.GetSpacing(), image.GetSpacing()) and np.allclose(back.GetOrigin(), image.GetOrigin())
    assert np.allclose(back.GetDirection(), image.GetDirection(), atol=1e-6)
    with pytest.raises(ValueError, match=".nii.gz"):
        write_stored_gzip(image, tmp_path / "jacobian.nrrd")


def test_iso_lines_of_a_ramp_fall_between_the_multiples_of_the_step():
    ramp = np.tile(np.arange(30, dtype=np.float32), (4, 1))
    assert np.flatnonzero(_iso_lines(ramp, 10.0)[0]).tolist() == [9, 19]
    assert not _iso_lines(np.zeros((5, 5)), 10.0).any()


def test_det_colours_white_at_one_blue_red_at_the_ends_and_folds_black():
    colours = _det_colours(np.array([[1.0, 0.0, 2.0, -0.5, 5.0]]))[0]
    assert colours[0].tolist() == [247, 247, 247]
    assert colours[1].tolist() == [0, 0, 0] and colours[3].tolist() == [0, 0, 0]  # det <= 0: folds
    assert colours[2][0] > colours[2][2] and colours[4].tolist() == colours[2].tolist()  # red, clipped at 2


def test_overview_draws_the_deformed_grid_where_the_map_moves(tmp_path):
    shape = (20, 24, 28)
    volume = np.random.default_rng(1).random(shape).astype(np.float32)
    det = np.ones(shape, dtype=np.float32)
    z, y, x = (n // 2 for n in shape)
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"))  # 3 x D x H x W
    planes = [grid[:, z], grid[:, :, y], grid[:, :, :, x]]
    shifted = [p + np.array([0.0, 3.0, 3.0], dtype=np.float32)[:, None, None] for p in planes]
    save_overview(tmp_path / "identity.png", volume, volume, planes, det, (2.0, 1.0, 1.0))
    save_overview(tmp_path / "none.png", volume, volume, None, det, (2.0, 1.0, 1.0))
    save_overview(tmp_path / "shifted.png", volume, volume, shifted, det, (2.0, 1.0, 1.0))
    identity_png = np.asarray(Image.open(tmp_path / "identity.png"))
    assert identity_png.ndim == 3 and identity_png.shape[2] == 3
    assert np.array_equal(identity_png, np.asarray(Image.open(tmp_path / "none.png")))  # None = identity grid
    yellow = (identity_png == GRID_COLOUR).all(axis=-1)
    assert yellow.sum() > 100
    shifted_png = np.asarray(Image.open(tmp_path / "shifted.png"))
    assert not np.array_equal((shifted_png == GRID_COLOUR).all(axis=-1), yellow)


@pytest.mark.parametrize("size, sigmas", [((41, 41, 41), (2.0, 1.0, 3.0)),  # one recursive filter
                                          ((41, 41, 41), (2.0, 0.0, 3.0)),  # axis by axis, y untouched
                                          ((41, 3, 41), (2.0, 1.0, 3.0))])  # y too short: discrete kernel
def test_gaussian_blur_of_an_impulse_has_unit_mass_and_the_requested_sigma_in_mm(size, sigmas):
    impulse = sitk.Image(list(size), sitk.sitkFloat32)
    impulse.SetSpacing((0.5, 1.0, 1.0))
    centre = [n // 2 for n in size]
    impulse[centre] = 1.0
    response = sitk.GetArrayFromImage(gaussian_blur(impulse, list(sigmas)))  # z, y, x
    assert np.isfinite(response).all()
    if min(size) >= 4:  # the IIR filter keeps the mass to 0.1 %; a 3-voxel axis loses some at its faces
        assert response.sum() == pytest.approx(1.0, abs=5e-3)
    for axis, (sigma, spacing) in enumerate(zip(sigmas, (0.5, 1.0, 1.0))):
        array_axis = 2 - axis
        profile = response.sum(axis=tuple(a for a in range(3) if a != array_axis))
        offsets = (np.arange(size[axis]) - centre[axis]) * spacing
        measured = float(np.sqrt((profile * offsets**2).sum() / profile.sum()))
        if sigma == 0:
            assert measured == 0.0
        elif size[axis] >= 4 * sigma / spacing + 1:
            assert measured == pytest.approx(sigma, rel=0.06)

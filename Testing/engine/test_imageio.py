"""Reading inputs (``avsm.imageio``): the initial transform of ``avsm.register(initial_transform=...)``."""
import numpy as np
import pytest
import SimpleITK as sitk

from avsm import AVSMError, register
from avsm.imageio import read_linear_transform

from engine_fixtures import SAMPLE_DATA


def _known_affine() -> sitk.AffineTransform:
    rigid = sitk.Euler3DTransform((1.0, -2.0, 3.0), 0.1, -0.05, 0.2, (4.0, -7.0, 2.5))
    affine = sitk.AffineTransform(3)
    affine.SetMatrix(rigid.GetMatrix())
    affine.SetTranslation(rigid.GetTranslation())
    affine.SetCenter(rigid.GetCenter())
    return affine


def test_a_linear_transform_becomes_its_matrix_from_a_file_and_in_memory(tmp_path):
    transform = _known_affine()
    sitk.WriteTransform(transform, str(tmp_path / "initial.tfm"))
    for source in (transform, tmp_path / "initial.tfm"):
        matrix = read_linear_transform(source)
        point = np.array([10.0, -20.0, 30.0])
        assert np.allclose(matrix[:3, :3] @ point + matrix[:3, 3], transform.TransformPoint(tuple(point)), atol=1e-6)


def test_deformable_missing_and_singular_transforms_are_refused(tmp_path):
    field = sitk.Image(4, 4, 4, sitk.sitkVectorFloat64)
    field[1, 1, 1] = (3.0, 0.0, 0.0)
    with pytest.raises(AVSMError, match="initial transform is not linear"):
        read_linear_transform(sitk.DisplacementFieldTransform(field))
    with pytest.raises(AVSMError, match="initial transform '.*nothing.tfm': file not found"):
        read_linear_transform(tmp_path / "nothing.tfm")
    flat = sitk.AffineTransform(3)
    flat.SetMatrix((1, 0, 0, 0, 1, 0, 0, 0, 0))
    with pytest.raises(AVSMError, match="singular"):
        read_linear_transform(flat)


def test_register_starts_the_affine_stage_from_the_initial_transform():
    transform = _known_affine()
    report = register(SAMPLE_DATA / "fixed_t1_2mm.nii.gz", SAMPLE_DATA / "moving_t1_2mm.nii.gz", method="affine",
                      affine_iterations=0, working_spacing=6.0, device="cpu", initial_transform=transform).report
    assert report["initial_source"] == "initial transform"
    assert np.allclose(report["affine_matrix"], read_linear_transform(transform), atol=1e-5)  # 0 steps: unchanged

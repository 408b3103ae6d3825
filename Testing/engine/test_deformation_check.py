"""``avsm.optimisation.deformation_check``: a network's deformation is kept only when it brings the images closer
than its affine alone; ``avsm.register`` reports the check and falls back to the affine."""
import numpy as np
import torch

from avsm import register
from avsm.geometry import Grid, image_to_tensor, physical_points
from avsm.maps import warp_image
from avsm.optimisation import AffineParameters, PriorDeformation
from avsm.optimisation.deformation_check import check_deformation

from engine_fixtures import SAMPLE_DATA, blob_image

SHIFT_MM = 4.0


def _shifted_pair():
    """A fixed image and the moving image ``moving(y) = fixed(y - 4 mm along x)``, on the same grid."""
    image = blob_image(size=(40, 36, 32), spacing=(2.0, 2.0, 2.0), seed=3)
    grid = Grid.of_image(image)
    fixed = image_to_tensor(image)
    points = physical_points(grid)
    moved_points = points.clone()
    moved_points[:, 0] -= SHIFT_MM
    moving = warp_image(fixed, grid, moved_points)
    return fixed, moving, grid, points


def _deformation(points: torch.Tensor, grid: Grid, shift: float) -> PriorDeformation:
    deformation = points.clone()
    deformation[:, 0] += shift
    inverse = points.clone()
    inverse[:, 0] -= shift
    return PriorDeformation(deformation, inverse, grid)


def test_the_right_deformation_is_kept_and_the_wrong_one_refused():
    fixed, moving, grid, points = _shifted_pair()
    identity = AffineParameters(np.eye(3), np.zeros(3))
    right = check_deformation(fixed, grid, moving, grid, identity, _deformation(points, grid, SHIFT_MM))
    wrong = check_deformation(fixed, grid, moving, grid, identity, _deformation(points, grid, -SHIFT_MM))
    assert right.helps and right.deformed_loss < 0.5 * right.affine_loss
    assert not wrong.helps and wrong.affine_loss == right.affine_loss


def test_an_identity_deformation_scores_as_the_affine_alone():
    fixed, moving, grid, points = _shifted_pair()
    affine = AffineParameters(np.eye(3), np.array([SHIFT_MM, 0.0, 0.0]))  # the affine does the work
    check = check_deformation(fixed, grid, moving, grid, affine, _deformation(points, grid, 0.0))
    assert abs(check.deformed_loss - check.affine_loss) < 1e-6 and not check.helps


def test_register_reports_the_check_and_keeps_the_network_on_a_brain_pair():
    report = register(SAMPLE_DATA / "fixed_t1_2mm.nii.gz", SAMPLE_DATA / "moving_t1_2mm.nii.gz", preset="fast",
                      device="cpu").report
    network = report["network"]
    assert network["deformation_kept"] is True
    assert network["similarity_loss_network"] < network["similarity_loss_affine"]


def test_register_falls_back_to_the_affine_when_the_network_warps_the_images_apart():
    """An image against itself: any deformation of the network's is a loss; the fast preset then returns the
    network's affine alone, so det J is the affine's determinant everywhere."""
    fixed = SAMPLE_DATA / "fixed_t1_2mm.nii.gz"
    report = register(fixed, fixed, preset="fast", device="cpu").report
    network = report["network"]
    assert network["deformation_kept"] is False
    assert network["similarity_loss_network"] >= network["similarity_loss_affine"]
    det_affine = float(np.linalg.det(np.array(report["affine_matrix"])[:3, :3]))
    assert abs(report["det_jacobian_min"] - det_affine) < 1e-3 and abs(report["det_jacobian_max"] - det_affine) < 1e-3

"""``avsm.optimisation.deformation_check``: a deformation is kept only when it brings the images closer than the
affine alone, judged by mutual information at full resolution; ``avsm.register`` reports the checks and falls back."""
import numpy as np
import SimpleITK as sitk
import torch

from avsm import register
from avsm.geometry import Grid, coarser_grid, physical_points
from avsm.optimisation import AffineParameters
from avsm.optimisation.deformation_check import DeformationJudge

from engine_fixtures import SAMPLE_DATA, blob_image

SHIFT_MM = 4.0
IDENTITY = AffineParameters(np.eye(3), np.zeros(3))


def _judge_and_grid(invert: bool = False):
    """A judge of ``moving(y) = fixed(y - 4 mm along x)`` (contrast inverted if asked), and a coarse map grid."""
    fixed = blob_image(size=(40, 36, 32), spacing=(1.5, 1.5, 2.0), seed=3)
    moving = sitk.Resample(fixed, fixed, sitk.TranslationTransform(3, (-SHIFT_MM, 0.0, 0.0)), sitk.sitkLinear, 0.0)
    if invert:
        moving = 1.0 - moving
    return DeformationJudge.of(fixed, moving), coarser_grid(Grid.of_image(fixed), 2.0)  # corner voxels kept


def _shifted(grid: Grid, shift: float) -> torch.Tensor:
    points = physical_points(grid)
    points[:, 0] += shift
    return points


def test_the_right_deformation_scores_best_and_the_wrong_one_worst():
    judge, map_grid = _judge_and_grid()
    none, right, wrong = judge.losses(IDENTITY, [None, _shifted(map_grid, SHIFT_MM), _shifted(map_grid, -SHIFT_MM)],
                                      map_grid)
    assert right < none < wrong


def test_the_judge_does_not_assume_the_contrast():
    judge, map_grid = _judge_and_grid(invert=True)
    none, right, wrong = judge.losses(IDENTITY, [None, _shifted(map_grid, SHIFT_MM), _shifted(map_grid, -SHIFT_MM)],
                                      map_grid)
    assert right < none < wrong


def test_an_identity_map_scores_as_the_affine_alone():
    judge, map_grid = _judge_and_grid()
    affine = AffineParameters(np.eye(3), np.array([SHIFT_MM, 0.0, 0.0]))  # the affine does the work
    alone, with_identity = judge.losses(affine, [None, physical_points(map_grid)], map_grid)
    assert abs(alone - with_identity) < 1e-5


def test_register_keeps_the_network_and_instance_optimisation_on_a_brain_pair():
    result = register(SAMPLE_DATA / "fixed_t1_2mm.nii.gz", SAMPLE_DATA / "moving_t1_2mm.nii.gz", preset="default",
                      device="cpu")
    network = result.report["network"]
    assert network["deformation_kept"] is True and network["instance_opt_kept"] is True
    assert "not kept" not in result.summary
    assert network["check_loss_instance_opt"] < network["check_loss_network"] < network["check_loss_affine"]


def test_register_falls_back_to_the_affine_when_the_network_warps_the_images_apart():
    """An image against itself from the identity (no affine network steps, no refinement): any deformation of the
    network's is a loss; the fast preset then returns the affine alone, so det J is the affine's determinant
    everywhere. (With the affine network, its deformation may rightly mend the affine's small error.)"""
    fixed = SAMPLE_DATA / "fixed_t1_2mm.nii.gz"
    result = register(fixed, fixed, preset="fast", device="cpu", network_affine_steps=0, affine_refine=0)
    report, network = result.report, result.report["network"]
    assert network["deformation_kept"] is False
    assert result.summary.endswith("not kept, as they made the images less similar: the network's deformation")
    assert network["check_loss_network"] >= network["check_loss_affine"]
    det_affine = float(np.linalg.det(np.array(report["affine_matrix"])[:3, :3]))
    assert abs(report["det_jacobian_min"] - det_affine) < 1e-3 and abs(report["det_jacobian_max"] - det_affine) < 1e-3


def test_when_the_deformation_is_not_kept_the_networks_affine_is_finished_at_the_affine_methods_grid():
    """The sample T1 against a rigidly moved copy of itself, the affine network skipped: the deformable network
    cannot improve on the refined affine and is not kept; the affine then takes its last steps at the affine method's
    grid, and its step at full resolution, which agrees with them (one anatomy) and is kept: it ends within 0.3 mm of
    the truth (refined at 1/4 and 1/2 of the network's grid alone it is about 0.5 mm off). With no refinement asked
    for, the network's affine stays as it is."""
    import SimpleITK as sitk

    fixed = sitk.ReadImage(str(SAMPLE_DATA / "fixed_t1_2mm.nii.gz"), sitk.sitkFloat32)
    centre = fixed.TransformContinuousIndexToPhysicalPoint([n / 2 for n in fixed.GetSize()])
    truth = sitk.Euler3DTransform(centre, 0.06, -0.04, 0.05, (3.0, -2.0, 2.0))
    moving = sitk.Resample(fixed, fixed, truth.GetInverse(), sitk.sitkLinear, 0.0)
    points = [fixed.TransformIndexToPhysicalPoint((i, j, k))
              for i in range(10, 80, 15) for j in range(10, 100, 15) for k in range(10, 80, 15)]

    def error_mm(report: dict) -> float:
        matrix = np.array(report["affine_matrix"])
        return float(np.mean([np.linalg.norm(matrix[:3, :3] @ p + matrix[:3, 3] - np.array(truth.TransformPoint(p)))
                              for p in points]))

    result = register(fixed, moving, preset="fast", device="cpu", network_affine_steps=0)
    finished = result.report
    assert finished["network"]["deformation_kept"] is False and finished["network"]["affine_finished"] is True
    assert "affine_finish" in finished["timings"] and error_mm(finished) < 0.3
    assert finished["affine_polish"]["kept"] is True
    assert result.summary.endswith("the networks' affine finished at the affine method's grid")
    as_is = register(fixed, moving, preset="fast", device="cpu", network_affine_steps=0, affine_refine=0).report
    assert "affine_finished" not in as_is["network"] and "affine_finish" not in as_is["timings"]
    assert as_is["affine_polish"] is None
    # instance optimisation then has to improve on the finished affine, not on the affine before the finish
    network = register(fixed, moving, preset="default", device="cpu", network_affine_steps=0).report["network"]
    assert network["affine_finished"] is True
    assert network["instance_opt_kept"] == (network["check_loss_instance_opt"] < network["check_loss_affine_finished"])

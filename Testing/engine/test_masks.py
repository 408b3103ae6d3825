"""Similarity masks (``avsm.optimisation.masks``, ``MultiKernelLNCC.against(...)(warped, mask)``) and the
``fixed_mask`` / ``moving_mask`` options of ``avsm.register``: the images are compared only inside the masks."""
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from avsm import AVSMError, register
from avsm.geometry import Grid, axis_aligned_grid_covering, physical_points, physical_to_normalised
from avsm.losses import LNCCScale, MultiKernelLNCC
from avsm.optimisation import SimilarityMasks, field_of_view

from engine_fixtures import SAMPLE_DATA, blob_image, oblique_direction

SCALES = (LNCCScale(1 / 4, 1.0, 1),)


def _pair(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    fixed = torch.rand((1, 1, 16, 16, 16), generator=generator)
    warped = torch.rand((1, 1, 16, 16, 16), generator=generator)
    return fixed, warped


def test_a_mask_of_ones_changes_nothing():
    fixed, warped = _pair()
    loss = MultiKernelLNCC(SCALES).against(fixed)
    assert torch.allclose(loss(warped, torch.ones_like(fixed)), loss(warped), atol=1e-6)
    assert torch.allclose(loss(warped), MultiKernelLNCC(SCALES)(warped, fixed), atol=1e-6)


def test_what_lies_outside_the_mask_does_not_count():
    fixed, warped = _pair()
    mask = torch.zeros_like(fixed)
    mask[..., :8] = 1.0  # the half x < 8
    changed = warped.clone()
    changed[..., 12:] = torch.rand((1, 1, 16, 16, 4), generator=torch.Generator().manual_seed(1))
    # windows of 4 voxels: x >= 12 never meets x < 8
    loss = MultiKernelLNCC(SCALES).against(fixed)
    assert torch.allclose(loss(warped, mask), loss(changed, mask), atol=1e-6)
    assert not torch.allclose(loss(warped), loss(changed), atol=1e-4)


def test_a_window_across_the_mask_edge_is_scored_on_its_inside_part():
    """Inside the mask the warped image is a linear function of the fixed one, outside it is noise: every window
    that meets the mask correlates perfectly over its inside voxels, so the masked loss is 0."""
    fixed, noise = _pair()
    mask = torch.zeros_like(fixed)
    mask[..., :8] = 1.0
    warped = torch.where(mask > 0, 0.5 * fixed + 0.2, noise)
    loss = MultiKernelLNCC(SCALES).against(fixed)
    assert loss(warped, mask).item() < 1e-3
    assert loss(warped).item() > 0.1


def test_the_moving_mask_is_pulled_back_through_the_map():
    grid = Grid.of_image(sitk.Image(8, 8, 8, sitk.sitkFloat32))
    moving = torch.zeros((1, 1, 8, 8, 8))
    moving[..., 4:] = 1.0  # x >= 4 on the moving grid
    points = physical_points(grid)
    shifted = points.clone()
    shifted[:, 0] += 2.0  # fixed x maps to moving x + 2
    weight = SimilarityMasks(moving=moving).weight(grid, physical_to_normalised(shifted, grid))
    assert torch.allclose(weight[..., 2:6], torch.ones(1), atol=1e-5)  # lands on moving x 4..7: inside
    assert torch.allclose(weight[..., :2], torch.zeros(1), atol=1e-5)  # moving x 2..3: outside the mask
    assert torch.allclose(weight[..., 6:], torch.zeros(1), atol=1e-5)  # beyond the moving image
    assert SimilarityMasks().weight(grid, points.permute(0, 2, 3, 4, 1)) is None


def _corrupted_pair(tmp_path):
    """The sample fixed image, and a copy moved by 6 mm along x with a bright block pasted over one side."""
    fixed = sitk.ReadImage(str(SAMPLE_DATA / "fixed_t1_2mm.nii.gz"), sitk.sitkFloat32)
    shift = sitk.TranslationTransform(3, (6.0, 0.0, 0.0))
    moving = sitk.Resample(fixed, fixed, shift, sitk.sitkLinear, 0.0)
    array = sitk.GetArrayFromImage(moving)
    block = np.zeros(array.shape, dtype=np.uint8)
    block[20:60, 30:80, 10:40] = 1
    array[block > 0] = array.max()
    corrupted = sitk.GetImageFromArray(array)
    corrupted.CopyInformation(moving)
    mask = sitk.GetImageFromArray((1 - block).astype(np.uint8))
    mask.CopyInformation(moving)
    paths = {name: tmp_path / f"{name}.nii.gz" for name in ("fixed", "moving", "mask")}
    for name, image in (("fixed", fixed), ("moving", corrupted), ("mask", mask)):
        sitk.WriteImage(image, str(paths[name]))
    return paths


def test_a_moving_mask_over_a_corrupted_region_recovers_the_shift_better(tmp_path):
    paths = _corrupted_pair(tmp_path)
    options = dict(method="affine", affine_iterations=40, working_spacing=4.0, device="cpu")
    plain = register(paths["fixed"], paths["moving"], **options).report
    masked = register(paths["fixed"], paths["moving"], moving_mask=paths["mask"], **options).report
    assert masked["masks"] == ["moving"] and plain["masks"] == []
    # the moving image is the fixed one moved by +6 mm: fixed -> moving points are x - 6
    errors = [np.abs(np.array(r["affine_matrix"])[:3, 3] - (-6.0, 0.0, 0.0)).max() for r in (plain, masked)]
    assert errors[1] < 0.7 * errors[0] and errors[1] < 2.0  # within half a voxel of the 4 mm working grid


def test_an_empty_mask_and_a_mask_on_another_grid_are_refused(tmp_path):
    fixed = SAMPLE_DATA / "fixed_t1_2mm.nii.gz"
    image = sitk.ReadImage(str(fixed))
    empty = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(image)
    sitk.WriteImage(empty, str(tmp_path / "empty.nii.gz"))
    with pytest.raises(AVSMError, match="fixed mask image '.*empty.nii.gz' is empty"):
        register(fixed, SAMPLE_DATA / "moving_t1_2mm.nii.gz", method="affine", fixed_mask=tmp_path / "empty.nii.gz")
    with pytest.raises(AVSMError, match="fixed mask image .* is on a different grid from its image"):
        register(fixed, SAMPLE_DATA / "moving_t1_2mm.nii.gz", method="affine",
                 fixed_mask=SAMPLE_DATA / "moving_brainmask_2mm.nii.gz")


def test_the_field_of_view_is_where_simpleitk_resampling_finds_the_image():
    image = blob_image(direction=oblique_direction(25.0))  # oblique, anisotropic
    working = axis_aligned_grid_covering(Grid.of_image(image), 1.0, margin_mm=4.0)
    ones = sitk.Image(image.GetSize(), sitk.sitkFloat32) + 1.0
    ones.CopyInformation(image)
    expected = sitk.GetArrayFromImage(sitk.Resample(ones, working.reference_image(), sitk.Transform(),
                                                    sitk.sitkLinear, 0.0)) > 0.5
    fraction = field_of_view(Grid.of_image(image), working)[0, 0].numpy()
    assert fraction.shape == expected.shape and 0.2 < expected.mean() < 0.9
    assert ((fraction > 0.5) == expected).mean() > 0.999  # only voxel centres on the box's faces may differ
    assert fraction.min() == 0.0


def test_a_partial_field_of_view_does_not_pull_the_affine(tmp_path):
    """The moving image is the fixed one moved by +6 mm along z and cut below 45 % of its height (a scan that
    stops above the chin): the affine stage recovers the shift, because only the overlap is compared."""
    fixed = sitk.ReadImage(str(SAMPLE_DATA / "fixed_t1_2mm.nii.gz"), sitk.sitkFloat32)
    moved = sitk.Resample(fixed, fixed, sitk.TranslationTransform(3, (0.0, 0.0, 6.0)), sitk.sitkLinear, 0.0)
    size = list(moved.GetSize())
    cut = int(0.45 * size[2])
    moving = sitk.RegionOfInterest(moved, size[:2] + [size[2] - cut], [0, 0, cut])
    sitk.WriteImage(fixed, str(tmp_path / "fixed.nii.gz"))
    sitk.WriteImage(moving, str(tmp_path / "moving.nii.gz"))
    report = register(tmp_path / "fixed.nii.gz", tmp_path / "moving.nii.gz", method="affine", device="cpu").report
    matrix = np.array(report["affine_matrix"])
    # fixed -> moving points: z - 6 (the sample's z axis is LPS z)
    assert np.abs(matrix[:3, 3] - (0.0, 0.0, -6.0)).max() < 1.5
    assert np.abs(matrix[:3, :3] - np.eye(3)).max() < 0.03


@pytest.mark.parametrize("similarity", ["lncc", "mi"])
def test_differentiable_weights_give_the_exact_gradient_of_a_masked_similarity(similarity):
    """With the moving mask pulled back differentiably, autograd's derivative of the masked similarity along a
    shift equals the central finite difference; with detached weights it misses the voxels that enter or leave
    the compared region and differs."""
    from avsm.losses import affine_similarity

    image = blob_image(size=(20, 20, 20), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), seed=3)
    grid = Grid.of_image(image)
    fixed = torch.as_tensor(sitk.GetArrayFromImage(image), dtype=torch.float64)[None, None]
    box = sitk.Image(20, 20, 11, sitk.sitkFloat32)  # the moving scan saw the lower half only (z < 10.5)
    mask = field_of_view(Grid.of_image(box), grid).double()
    moving = fixed.roll(1, dims=4) * (mask > 0)  # and holds nothing beyond
    loss_against_fixed = (affine_similarity(similarity) if similarity == "mi"
                          else MultiKernelLNCC((LNCCScale(1 / 4, 1.0, 1),))).against(fixed)
    points = physical_points(grid, dtype=torch.float64)
    direction = torch.tensor([0.6, 0.2, -0.77], dtype=torch.float64)[None, :, None, None, None]

    def loss(step: torch.Tensor, differentiable: bool) -> torch.Tensor:
        coordinates = physical_to_normalised(points + 3.0 * step * direction, grid)
        weight = SimilarityMasks(moving=mask).weight(grid, coordinates, differentiable=differentiable)
        return loss_against_fixed(torch.nn.functional.grid_sample(moving, coordinates, align_corners=True), weight)

    step = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    exact = torch.autograd.grad(loss(step, True), step)[0].item()
    detached = torch.autograd.grad(loss(step, False), step)[0].item()
    with torch.no_grad():
        h = 1e-4
        finite = ((loss(step + h, True) - loss(step - h, True)) / (2 * h)).item()
    assert exact == pytest.approx(finite, rel=1e-3, abs=1e-7)
    assert abs(detached - finite) > 0.05 * abs(finite)


def test_weights_carry_no_gradient_unless_asked():
    grid = Grid.of_image(sitk.Image(6, 6, 6, sitk.sitkFloat32))
    coordinates = physical_to_normalised(physical_points(grid), grid).requires_grad_(True)
    masks = SimilarityMasks(moving=torch.ones((1, 1, 6, 6, 6)))
    assert not masks.weight(grid, coordinates).requires_grad
    assert masks.weight(grid, coordinates, differentiable=True).requires_grad

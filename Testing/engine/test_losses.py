"""Similarity losses: closed-form values, invariances and gradients."""
import torch

from avsm.losses import LNCCScale, MultiKernelLNCC, box_sum, diffusion_regulariser, local_ncc_loss, mse_loss, ncc_loss


def _image(seed=0, shape=(1, 1, 20, 22, 18)):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.avg_pool3d(torch.rand(shape, generator=g, dtype=torch.float64), 3, 1, 1)


def test_box_sum_matches_a_direct_sum_with_dilation_and_stride():
    x = _image()
    out = box_sum(x, size=3, dilation=2, stride=2)
    expected = x[0, 0, 0:5:2, 2:7:2, 4:9:2].sum()  # window starting at (0, 2, 4) in output (0, 1, 2)
    assert torch.allclose(out[0, 0, 0, 1, 2], expected)


def test_box_sum_without_dilation_matches_direct_sums_for_any_size_and_stride():
    x = _image(seed=3, shape=(1, 2, 13, 11, 12))
    for size in (1, 2, 3, 5, 6, 7, 8, 11):
        for stride in (1, 2, 3):
            out = box_sum(x, size=size, stride=stride)
            expected = x.unfold(2, size, stride).unfold(3, size, stride).unfold(4, size, stride).sum(dim=(-3, -2, -1))
            assert out.shape == expected.shape and torch.allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_box_sum_in_single_precision_keeps_small_windows_exact_on_a_long_axis():
    # a bright offset along a long axis: a running total's rounding would swamp a small window's variance
    x = (1000.0 + _image(seed=6, shape=(1, 1, 400, 3, 3))).float()
    out = box_sum(x, size=3)
    expected = box_sum(x.double(), size=3)
    assert torch.allclose(out.double(), expected, rtol=1e-6, atol=0)


def test_box_sum_passes_gradcheck_at_a_stride():
    x = _image(seed=7, shape=(1, 2, 9, 8, 7)).requires_grad_(True)
    for size, stride in ((1, 1), (3, 2), (4, 3), (5, 1)):
        assert torch.autograd.gradcheck(lambda v: box_sum(v, size=size, stride=stride), (x,))


def test_similarities_are_zero_for_identical_images_and_ncc_is_affine_invariant():
    a = _image()
    assert float(ncc_loss(a, a)) < 1e-10
    assert float(ncc_loss(3.0 * a + 0.5, a)) < 1e-10
    assert float(MultiKernelLNCC()(a, a)) < 1e-4  # eps 1e-5 on the unnormalised variance product
    assert float(local_ncc_loss(a, a)) < 1e-3
    assert float(mse_loss(a, a)) == 0.0
    b = _image(seed=1)
    assert float(MultiKernelLNCC()(b, a)) > 0.1


def test_mk_lncc_picks_the_reference_kernel_set_by_size():
    lncc = MultiKernelLNCC()
    assert len(lncc.scales_for((130, 140, 150))) == 3
    assert len(lncc.scales_for((80, 192, 192))) == 2
    assert len(lncc.scales_for((40, 50, 60))) == 1


def test_lncc_gives_the_same_value_and_gradient_with_a_constant_or_a_differentiable_fixed_image():
    for scales in (None, ((LNCCScale(1 / 4, 0.4, 1), LNCCScale(1 / 2, 0.6, 1)))):
        fixed = _image(seed=4)
        warped = _image(seed=5).requires_grad_(True)
        loss = MultiKernelLNCC(scales)(warped, fixed)  # fixed without grad: its box sums skip autograd
        (grad,) = torch.autograd.grad(loss, warped)
        fixed_grad = fixed.clone().requires_grad_(True)
        loss_both = MultiKernelLNCC(scales)(warped, fixed_grad)
        grad_both, grad_fixed = torch.autograd.grad(loss_both, (warped, fixed_grad))
        assert torch.allclose(loss, loss_both, rtol=1e-12) and torch.allclose(grad, grad_both, rtol=1e-10, atol=1e-14)
        assert grad_fixed.abs().sum() > 0


def test_lncc_and_ncc_pass_gradcheck():
    fixed = _image(shape=(1, 1, 8, 9, 8))
    warped = _image(seed=2, shape=(1, 1, 8, 9, 8)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda w: MultiKernelLNCC()(w, fixed), (warped,))
    assert torch.autograd.gradcheck(lambda f: MultiKernelLNCC()(warped.detach(), f), (fixed.clone().requires_grad_(True),))
    assert torch.autograd.gradcheck(lambda w: ncc_loss(w, fixed), (warped,))


def test_diffusion_regulariser_of_a_linear_ramp():
    z = torch.arange(6, dtype=torch.float64).view(1, 1, 6, 1, 1).expand(1, 3, 6, 5, 4)
    # forward differences along D are 1 for every channel, 0 along H and W
    assert abs(float(diffusion_regulariser(z)) - 1.0 / 3.0) < 1e-12


def test_mutual_information_ignores_a_non_monotonic_change_of_contrast():
    from avsm.losses import MutualInformation

    generator = torch.Generator().manual_seed(3)
    fixed = torch.rand((1, 1, 20, 20, 20), generator=generator)
    remapped = (0.5 - fixed).abs() * 2  # a non-monotonic intensity mapping: one image still determines the other
    noise = torch.rand((1, 1, 20, 20, 20), generator=generator)
    mi = MutualInformation()
    same, folded, independent = (float(mi(image, fixed)) for image in (fixed, remapped, noise))
    assert independent > 0.99  # loss 2 - NMI: NMI is 1 for independent images
    assert same < folded < independent - 0.2  # the fold merges bin pairs: a little less than identical images
    assert float(MultiKernelLNCC()(remapped, fixed)) > 0.99  # local correlation does not see the relation


def test_mutual_information_with_a_mask_counts_only_the_voxels_inside():
    from avsm.losses import MutualInformation

    generator = torch.Generator().manual_seed(4)
    fixed = torch.rand((1, 1, 16, 16, 16), generator=generator)
    warped = fixed.clone()
    warped[..., 8:] = torch.rand((1, 1, 16, 16, 8), generator=generator)
    mask = torch.zeros_like(fixed)
    mask[..., :8] = 1.0
    loss = MutualInformation().against(fixed)
    assert float(loss(warped, mask)) < float(loss(warped)) - 0.2


def _ramp(axis: int, slope: float, size: int = 10) -> torch.Tensor:
    """``1 x 1 x size^3`` image rising by ``slope`` per voxel along ``axis`` (2: D, 3: H, 4: W)."""
    shape = [1, 1, 1, 1, 1]
    shape[axis] = size
    return (slope * torch.arange(size, dtype=torch.float64)).reshape(shape).expand(1, 1, size, size, size).clone()


def test_normalised_gradient_fields_of_ramps_in_closed_form():
    """A ramp of slope a has |g| = a everywhere, so the edge parameter is a / 2 and aligned ramps score
    1 - a^4 / (a^2 + a^2 / 4)^2 = 0.36, whatever the polarity or scale of either; perpendicular ramps score 1."""
    from avsm.losses import NormalisedGradientFields

    ngf = NormalisedGradientFields(edge=0.5)
    fixed = _ramp(4, 0.1)
    for moving in (fixed, 1.0 - fixed, 3.0 * fixed, 0.2 - 0.5 * fixed):
        assert abs(float(ngf(moving, fixed)) - 0.36) < 1e-12
    assert abs(float(ngf(_ramp(3, 0.1), fixed)) - 1.0) < 1e-12


def test_normalised_gradient_fields_prefer_aligned_edges_across_a_non_monotonic_change_of_contrast():
    from avsm.losses import NormalisedGradientFields

    zz, yy, xx = torch.meshgrid(*(torch.arange(24, dtype=torch.float64),) * 3, indexing="ij")
    radius = ((zz - 11.5) ** 2 + (yy - 11.5) ** 2 + (xx - 11.5) ** 2).sqrt()
    t1 = torch.where(radius < 5, 0.8, torch.where(radius < 8, 0.5, torch.where(radius < 10, 0.2, 0.0)))[None, None]
    flair = torch.where(t1 == 0.8, 0.4, torch.where(t1 == 0.5, 0.65, torch.where(t1 == 0.2, 0.1, 0.0)))
    ngf = NormalisedGradientFields().against(t1)
    aligned = float(ngf(flair))
    assert all(aligned < float(ngf(torch.roll(flair, 2, dims=axis))) - 0.1 for axis in (2, 3, 4))


def test_normalised_gradient_fields_pass_gradcheck_and_count_only_voxels_inside_a_mask():
    from avsm.losses import NormalisedGradientFields

    generator = torch.Generator().manual_seed(5)
    fixed = torch.rand((1, 1, 6, 6, 6), generator=generator, dtype=torch.float64)
    warped = torch.rand((1, 1, 6, 6, 6), generator=generator, dtype=torch.float64, requires_grad=True)
    loss = NormalisedGradientFields().against(fixed)
    assert torch.autograd.gradcheck(lambda image: loss(image), (warped,))
    flat = torch.zeros_like(fixed).requires_grad_(True)  # no edge anywhere: a finite gradient all the same
    loss(flat + fixed * (torch.arange(6, dtype=torch.float64) > 2)).backward()
    assert torch.isfinite(flat.grad).all()
    mixed = fixed.clone()
    mixed[..., 3:] = torch.rand((1, 1, 6, 6, 3), generator=generator, dtype=torch.float64)
    mask = torch.zeros_like(fixed)
    mask[..., :3] = 1.0
    # inside the mask the interior voxels (W index 1, 2) see only the matching half
    assert float(loss(mixed, mask)) < float(loss(mixed)) - 0.1

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

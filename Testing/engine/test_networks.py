"""Networks: shapes at odd sizes, identity at initialisation, the affine composition rule, gradients,
VoxelMorph's diffeomorphic output, and the pipeline's network methods with a small saved checkpoint."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from avsm.geometry import Grid, coarser_grid, physical_points
from avsm.jacobian import det_jacobian
from avsm.maps import apply_affine, warp_image
from avsm.networks import (AffineNet, MomentumUNet, NetworkConfig, VoxelMorphUNet, build_network, compose_affine,
                           correction_affine, multi_step_affine)
from engine_fixtures import SAMPLE_DATA, blob_image

NARROW = dict(affine_width=4, affine_hidden=8, momentum_widths=(4, 8, 8, 8, 8), voxelmorph_enc=(4, 8, 8, 8),
              voxelmorph_dec=(8, 8, 8, 8, 8, 4, 4))


def odd_grid(shape=(13, 15, 11), spacing=3.0, origin=(-20.0, 7.0, 3.0)) -> Grid:
    return Grid(shape, (spacing,) * 3, origin, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))


def blob_tensor(shape, seed):
    image = blob_image(size=shape[::-1], seed=seed)
    return torch.from_numpy(sitk.GetArrayFromImage(image))[None, None]


def test_momentum_unet_outputs_half_resolution_at_odd_sizes():
    net = MomentumUNet((4, 8, 8, 8, 8))
    for shape in [(13, 15, 11), (16, 16, 16), (9, 20, 7)]:
        out = net(torch.randn(2, 2, *shape))
        assert out.shape == (2, 3, *coarser_grid(odd_grid(shape), 2).shape)


def test_momentum_unet_has_the_reference_size_at_reference_widths():
    assert sum(p.numel() for p in MomentumUNet().parameters()) == 5_938_515


def test_voxelmorph_unet_keeps_the_input_size_and_reference_parameter_count():
    net = VoxelMorphUNet()
    assert sum(p.numel() for p in net.parameters()) == 327_331  # VoxelMorph's default U-net: ~327 k
    assert net(torch.randn(1, 2, 13, 15, 11)).shape == (1, 3, 13, 15, 11)


def test_affine_net_is_size_independent_and_starts_at_identity():
    net = AffineNet(4, 8)
    for shape in [(13, 15, 11), (24, 20, 30)]:
        params = net(torch.rand(2, 1, *shape), torch.rand(2, 1, *shape))
        assert params.shape == (2, 12) and torch.count_nonzero(params) == 0


def test_untrained_affine_network_returns_the_initial_affine_and_its_warp():
    grid = odd_grid()
    fixed, moving = blob_tensor((13, 15, 11), 1), blob_tensor((13, 15, 11), 2)
    matrix0 = torch.tensor([[1.02, 0.01, 0.0], [0.0, 0.98, 0.03], [0.0, 0.0, 1.0]])
    translation0 = torch.tensor([1.5, -2.0, 0.5])
    steps = multi_step_affine(AffineNet(4, 8), fixed, grid, moving, grid, matrix0[None], translation0[None], 3)
    assert torch.allclose(steps.matrix[0], matrix0) and torch.allclose(steps.translation[0], translation0)
    expected = warp_image(moving, grid, apply_affine(matrix0, translation0, physical_points(grid)))
    assert torch.allclose(steps.warped, expected)


def test_identity_initial_affine_gives_the_identity_map():
    grid = odd_grid()
    net = build_network(NetworkConfig(**NARROW))
    fixed, moving = blob_tensor((13, 15, 11), 1), blob_tensor((13, 15, 11), 2)
    affine = net.affine(fixed, grid, moving, grid, torch.eye(3)[None], torch.zeros(1, 3), steps=2)
    out = net.deformable(fixed, grid, moving, grid, affine.matrix, affine.translation, steps=2, with_inverse=True)
    identity = physical_points(grid)
    assert torch.allclose(out.phi, identity, atol=1e-4)
    assert torch.allclose(out.warped, moving, atol=1e-5)
    assert torch.allclose(out.pushforward_map, physical_points(out.map_grid), atol=1e-4)


def test_composition_rule_matches_the_closed_form():
    """A_t = Ã A_{t-1}, b_t = Ã b_{t-1} + b̃ is corr ∘ phi_{t-1}; the correction rotates about its centre."""
    rng = np.random.default_rng(0)
    previous = torch.tensor(np.eye(3) + 0.05 * rng.normal(size=(3, 3)))[None], torch.tensor(rng.normal(size=3))[None]
    params = torch.tensor(np.r_[0.05 * rng.normal(size=9), 0.01 * rng.normal(size=3)])[None]
    centre = torch.tensor([[10.0, -5.0, 20.0]], dtype=torch.float64)
    corr_matrix, corr_translation = correction_affine(params, centre, extent=80.0)
    # the correction fixes the centre up to the shift s * extent
    moved_centre = (corr_matrix @ centre[..., None])[..., 0] + corr_translation
    assert torch.allclose(moved_centre, centre + params[:, 9:] * 80.0)
    matrix, translation = compose_affine(corr_matrix, corr_translation, *previous)
    x = torch.tensor(rng.normal(size=(3, 1)) * 50)
    step_by_step = corr_matrix[0] @ (previous[0][0] @ x + previous[1][0, :, None]) + corr_translation[0, :, None]
    assert torch.allclose(matrix[0] @ x + translation[0, :, None], step_by_step)
    assert torch.allclose(matrix[0], corr_matrix[0] @ previous[0][0])


def test_gradients_reach_every_trainable_layer():
    grid = odd_grid()
    fixed, moving = blob_tensor((13, 15, 11), 1), blob_tensor((13, 15, 11), 2)
    torch.manual_seed(0)
    for method in ("avsm", "voxelmorph"):
        net = build_network(NetworkConfig(method=method, **NARROW))
        with torch.no_grad():  # move the zero-initialised heads off zero so gradients reach earlier layers
            for p in net.parameters():
                p.add_(0.01 * torch.randn_like(p))
        affine = net.affine(fixed, grid, moving, grid, torch.eye(3)[None], torch.zeros(1, 3), steps=2)
        out = net.deformable(fixed, grid, moving, grid, affine.matrix, affine.translation, steps=2)
        loss = ((out.warped - fixed) ** 2).mean() + sum(out.step_regularisers)
        loss.backward()
        for name, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name


def test_voxelmorph_diffeomorphic_output_has_no_folds_for_a_random_field():
    grid = odd_grid((16, 18, 14), spacing=2.0)
    net = build_network(NetworkConfig(method="voxelmorph", **NARROW))
    torch.manual_seed(0)
    flow = torch.nn.functional.interpolate(torch.randn(1, 3, 4, 5, 4) * 2.5, size=grid.shape, mode="trilinear",
                                           align_corners=True)  # voxels; the field's own det J folds
    displacement_det = det_jacobian(physical_points(grid) + flow * 2.0, grid)
    assert (displacement_det <= 0).any()
    image = blob_tensor((16, 18, 14), 3)
    out = net.deformable(image, grid, image, grid, torch.eye(3)[None], torch.zeros(1, 3), with_inverse=True,
                         momenta=[flow])
    det = det_jacobian(out.pullback_map.double(), out.map_grid)
    assert det.min() > 0


def save_checkpoint(path, method, **overrides):
    config = NetworkConfig(method=method, affine_steps=2, vsvf_steps=2, **NARROW, **overrides)
    net = build_network(config)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0.1)
    torch.save({"config": config.to_dict(), "state_dict": net.state_dict(), "working_spacing_mm": 6.0}, path)
    return path


@pytest.mark.parametrize("method", ["avsm", "voxelmorph"])
def test_register_with_a_saved_checkpoint_writes_model_and_checksum(tmp_path, method):
    from avsm import register
    from avsm.checkpoints import sha256_of

    checkpoint = save_checkpoint(tmp_path / f"{method}.pt", method)
    result = register(SAMPLE_DATA / "fixed_t1_2mm.nii.gz", SAMPLE_DATA / "moving_t1_2mm.nii.gz", method=method,
                      model=str(checkpoint), device="cpu", instance_opt=2)
    report = result.report
    assert report["model"] == method and report["model_sha256"] == sha256_of(checkpoint)
    assert report["working_spacing_mm"] == 6.0 and report["network"]["instance_opt"] == 2
    assert report["fold_fraction"] < 1e-3
    result.save(tmp_path / "out")
    assert json.loads((tmp_path / "out" / "report.json").read_text())["model_sha256"] == sha256_of(checkpoint)


def test_weights_in_memory_register_as_their_saved_file_does(tmp_path):
    from avsm import register
    from avsm.checkpoints import in_memory

    checkpoint = save_checkpoint(tmp_path / "avsm.pt", "avsm")
    pair = (SAMPLE_DATA / "fixed_t1_2mm.nii.gz", SAMPLE_DATA / "moving_t1_2mm.nii.gz")
    from_file = register(*pair, method="avsm", model=str(checkpoint), device="cpu")
    from_memory = register(*pair, method="avsm", model=in_memory("step", torch.load(checkpoint, weights_only=True)),
                           device="cpu")
    assert from_memory.report["model"] == "step" and from_memory.report["model_sha256"] is None
    assert np.array_equal(sitk.GetArrayViewFromImage(from_memory.warped), sitk.GetArrayViewFromImage(from_file.warped))


def test_checkpoint_of_the_other_method_is_refused(tmp_path):
    from avsm import AVSMError, register

    checkpoint = save_checkpoint(tmp_path / "vxm.pt", "voxelmorph")
    with pytest.raises(AVSMError, match="holds a voxelmorph network, not a avsm network"):
        register(SAMPLE_DATA / "fixed_t1_2mm.nii.gz", SAMPLE_DATA / "moving_t1_2mm.nii.gz", method="avsm",
                 model=str(checkpoint))


def test_damaged_checkpoint_is_refused_with_its_reason(tmp_path):
    from avsm import AVSMError, register
    from avsm.checkpoints import sha256_of

    checkpoint = save_checkpoint(tmp_path / "avsm.pt", "avsm")
    (tmp_path / "avsm.pt.sha256").write_text(sha256_of(checkpoint) + "\n")
    data = bytearray(checkpoint.read_bytes())
    data[len(data) // 2] ^= 0xFF
    checkpoint.write_bytes(bytes(data))
    with pytest.raises(AVSMError, match="fails its checksum"):
        register(SAMPLE_DATA / "fixed_t1_2mm.nii.gz", SAMPLE_DATA / "moving_t1_2mm.nii.gz", method="avsm",
                 model=str(checkpoint))
    (tmp_path / "avsm.pt.sha256").unlink()
    checkpoint.write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(AVSMError, match="cannot be loaded"):
        register(SAMPLE_DATA / "fixed_t1_2mm.nii.gz", SAMPLE_DATA / "moving_t1_2mm.nii.gz", method="avsm",
                 model=str(checkpoint))


def test_multi_step_avsm_inverse_undoes_the_deformation():
    """psi = exp(-v_S) ∘ ... ∘ exp(-v_1) inverts psi^{-1} = psi_1^{-1} ∘ ... ∘ psi_S^{-1} (two steps)."""
    from avsm.maps import compose

    grid = odd_grid((20, 22, 18), spacing=2.0)
    net = build_network(NetworkConfig(**NARROW))
    map_grid = coarser_grid(grid, 2)
    torch.manual_seed(0)
    momenta = [torch.nn.functional.interpolate(torch.randn(1, 3, 3, 3, 3) * 4.0, size=map_grid.shape,
                                               mode="trilinear", align_corners=True) for _ in range(2)]
    image = blob_tensor((20, 22, 18), 4)
    out = net.deformable(image, grid, image, grid, torch.eye(3)[None], torch.zeros(1, 3), with_inverse=True,
                         momenta=momenta)
    identity = physical_points(map_grid)
    displacement = (out.pullback_map - identity).abs()
    round_trip = (compose(out.pullback_map, map_grid, out.pushforward_map) - identity).abs()
    inner = (..., slice(2, -2), slice(2, -2), slice(2, -2))
    assert displacement.max() > 2.0  # mm: a real deformation
    assert round_trip[inner].max() < 0.1 * displacement.max()


def test_cpu_conv3d_runs_onednn_and_matches_nn_conv3d_forward_and_backward():
    from torch.profiler import profile

    from avsm.networks.conv import Conv3d

    torch.manual_seed(0)
    fast = Conv3d(4, 8, 3, stride=2, padding=1)
    reference = torch.nn.Conv3d(4, 8, 3, stride=2, padding=1)
    reference.load_state_dict(fast.state_dict())  # same parameters, same state-dict keys
    x = torch.rand(1, 4, 9, 10, 11, requires_grad=True)
    with profile() as trace:
        y = fast(x)
    assert "aten::mkldnn_convolution" in {event.key for event in trace.key_averages()}
    y_ref = reference(x)
    assert torch.allclose(y, y_ref, atol=1e-5)
    grads = torch.autograd.grad(y.square().sum(), [x, fast.weight, fast.bias])
    grads_ref = torch.autograd.grad(y_ref.square().sum(), [x, reference.weight, reference.bias])
    for got, expected in zip(grads, grads_ref):
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4)
    double = fast.double()  # float64 (as gradcheck uses) takes nn.Conv3d's own path
    assert torch.autograd.gradcheck(double, (torch.rand(1, 4, 5, 5, 5, dtype=torch.float64, requires_grad=True),))


def test_instance_optimisation_follows_the_levels_of_its_settings(tmp_path):
    """Given settings with a coarse-to-fine schedule, instance optimisation runs those levels (its progress names
    them); without levels it runs ``instance_opt`` iterations at the working grid."""
    import dataclasses

    from avsm import register
    from avsm.optimisation import INSTANCE_OPT_SETTINGS

    checkpoint = save_checkpoint(tmp_path / "avsm.pt", "avsm")
    pair = (SAMPLE_DATA / "fixed_t1_2mm.nii.gz", SAMPLE_DATA / "moving_t1_2mm.nii.gz")
    for settings, expected in ((dataclasses.replace(INSTANCE_OPT_SETTINGS, levels=((0.5, 2), (1.0, 1))),
                                {"level 1/2, step 2/2", "level 2/2, step 1/1"}), (None, {"step 3/3"})):
        messages = []
        register(*pair, method="avsm", model=str(checkpoint), device="cpu", instance_opt=3, vsvf_settings=settings,
                 progress=lambda stage, fraction, message: messages.append(message) if stage == "instance_opt" else None)
        assert expected <= {message.split(", similarity")[0] for message in messages}

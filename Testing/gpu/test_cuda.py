"""On a CUDA GPU the engine computes what it computes on the CPU: networks, integration, warps, det J, losses and
their gradients agree, and the trainer runs a few steps from a tensor cache and stops itself at its time budget.

Skipped without a GPU. Imports only torch, numpy and avsm's tensor code (no SimpleITK, no ``engine_fixtures``),
so that ``scripts/gpu_run.sh`` runs it on a GPU machine with torch alone; without pytest there,
``python Testing/gpu/test_cuda.py`` runs the same tests. TF32 is switched off so that the comparisons are of
float32 on both devices.
"""
from __future__ import annotations

import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "AVSMRegistration"))

from avsm.geometry import Grid, physical_points  # noqa: E402
from avsm.integrate import advect_map, scaling_and_squaring  # noqa: E402
from avsm.jacobian import det_jacobian  # noqa: E402
from avsm.losses import MultiKernelLNCC, local_ncc_loss, ncc_loss  # noqa: E402
from avsm.maps import resample_map, warp_image  # noqa: E402
from avsm.networks import NetworkConfig, build_network  # noqa: E402

try:
    import pytest

    needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
except ModuleNotFoundError:  # a GPU image without pytest: __main__ below runs the tests
    def needs_cuda(test):
        return test

GRID = Grid((20, 24, 18), (4.0, 4.0, 4.0), (-34.0, -46.0, -38.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
SMALL_AVSM = NetworkConfig.from_dict({"method": "avsm", "affine_width": 4, "affine_hidden": 8, "affine_steps": 2,
                                      "momentum_widths": [4, 8, 8, 8, 8], "vsvf_steps": 2, "time_steps": 4})


def float32_everywhere():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def smooth(shape, seed: int, channels: int = 1, scale: float = 1.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand((1, channels, 5, 5, 5), generator=generator) * scale
    return torch.nn.functional.interpolate(coarse, size=shape, mode="trilinear", align_corners=True)


def agree(cpu: torch.Tensor, cuda: torch.Tensor, atol: float, rtol: float = 1e-4) -> None:
    difference = float((cpu - cuda.cpu()).abs().max())
    assert torch.allclose(cpu, cuda.cpu(), atol=atol, rtol=rtol), f"max difference {difference:.3g} (atol {atol:g})"


@needs_cuda
def test_avsm_network_maps_agree_on_cpu_and_cuda():
    float32_everywhere()
    torch.manual_seed(0)
    network = build_network(SMALL_AVSM).eval()
    fixed, moving = smooth(GRID.shape, 1), smooth(GRID.shape, 2)
    results = {}
    for device in ("cpu", "cuda"):
        net = network.to(device)
        eye, zero = torch.eye(3, device=device)[None], torch.zeros(1, 3, device=device)
        with torch.no_grad():
            affine = net.affine(fixed.to(device), GRID, moving.to(device), GRID, eye, zero)
            out = net.deformable(fixed.to(device), GRID, moving.to(device), GRID, affine.matrix, affine.translation)
        results[device] = (affine.matrix, out.phi, out.warped)
    agree(results["cpu"][0], results["cuda"][0], atol=1e-5)
    agree(results["cpu"][1], results["cuda"][1], atol=1e-3)  # mm
    agree(results["cpu"][2], results["cuda"][2], atol=1e-4)


@needs_cuda
def test_network_gradients_agree_on_cpu_and_cuda():
    float32_everywhere()
    torch.manual_seed(0)
    network = build_network(SMALL_AVSM)
    fixed, moving = smooth(GRID.shape, 3), smooth(GRID.shape, 4)
    gradients = {}
    for device in ("cpu", "cuda"):
        net = network.to(device)
        net.zero_grad()
        eye, zero = torch.eye(3, device=device)[None], torch.zeros(1, 3, device=device)
        out = net.deformable(fixed.to(device), GRID, moving.to(device), GRID, eye, zero)
        ((out.warped - fixed.to(device)) ** 2).mean().backward()
        gradients[device] = torch.cat([p.grad.flatten() for p in net.momentum_net.parameters()])
    scale = float(gradients["cpu"].abs().max())
    agree(gradients["cpu"], gradients["cuda"], atol=1e-3 * scale, rtol=1e-3)


@needs_cuda
def test_integration_warps_and_det_jacobian_agree_on_cpu_and_cuda():
    velocity = (smooth(GRID.shape, 5, channels=3) - 0.5) * 6.0  # mm
    identity = physical_points(GRID)
    phi_cpu = advect_map(identity, velocity, GRID, steps=5)
    phi_cuda = advect_map(identity.cuda(), velocity.cuda(), GRID, steps=5)
    agree(phi_cpu, phi_cuda, atol=1e-3)
    agree(scaling_and_squaring(velocity, GRID, 6), scaling_and_squaring(velocity.cuda(), GRID, 6), atol=1e-3)
    # each operation below on the same input on both devices
    agree(det_jacobian(phi_cpu.double(), GRID), det_jacobian(phi_cpu.double().cuda(), GRID), atol=1e-9)
    image = smooth(GRID.shape, 6)
    agree(warp_image(image, GRID, phi_cpu), warp_image(image.cuda(), GRID, phi_cpu.cuda()), atol=1e-5)
    fine = Grid((40, 48, 36), (2.0, 2.0, 2.0), (-35.0, -47.0, -39.0), GRID.direction)
    agree(resample_map(phi_cpu, GRID, fine), resample_map(phi_cpu.cuda(), GRID, fine), atol=1e-4)


@needs_cuda
def test_similarity_losses_and_their_gradients_agree_on_cpu_and_cuda():
    fixed, moving = smooth(GRID.shape, 7), smooth(GRID.shape, 8)
    for loss in (ncc_loss, local_ncc_loss, MultiKernelLNCC()):
        values, gradients = [], []
        for device in ("cpu", "cuda"):
            warped = moving.clone().to(device).requires_grad_(True)
            value = loss(warped, fixed.to(device))
            value.backward()
            values.append(value.detach())
            gradients.append(warped.grad)
        agree(values[0], values[1], atol=1e-5)
        agree(gradients[0], gradients[1], atol=1e-6 + 1e-4 * float(gradients[0].abs().max()))


@needs_cuda
def test_training_on_cuda_from_a_tensor_cache_stops_at_its_time_budget(tmp_path):
    from avsm.training.tensor_cache import FORMAT, VERSION, encode_volume
    from avsm.training.trainer import Trainer
    from avsm.training import load_config

    shape = (16, 16, 16)
    labels = [(smooth(shape, 20 + i) * 4).round().to(torch.int16) for i in range(4)]
    torch.save({"format": FORMAT, "version": VERSION, "grid_shape": list(shape), "working_spacing_mm": 6.0,
                "synthetic_brain_only": True, "held_out": [],
                "subjects": [{"name": f"s{i}", "image": encode_volume(smooth(shape, 10 + i), "image"),
                              "labels": encode_volume(labels[i], "labels")} for i in range(4)],
                "label_maps": [{"name": "m0", "labels": encode_volume(labels[0], "labels")}]},
               tmp_path / "cache.pt")
    (tmp_path / "run.toml").write_text(f"""run_dir = "run"
[data]
tensor_cache = "cache.pt"
validation_count = 2
synthetic_fraction = 0.5
working_spacing_mm = 6.0
grid_shape = {list(shape)}
[network]
method = "avsm"
affine_width = 2
affine_hidden = 4
affine_steps = 2
momentum_widths = [2, 4, 4, 4, 4]
time_steps = 4
[train]
affine_epochs = 1
affine_multi_epochs = 0
deformable_epochs = 1
deformable_multi_epochs = 1
steps_per_epoch = 2
checkpoint_every = 100
validation_pairs = 1
dice_weight = 1.0
device = "cuda"
""")
    complete = Trainer(load_config(tmp_path / "run.toml"))
    assert complete.device.type == "cuda"
    model = complete.run()
    assert model.is_file() and complete.step == 6
    config = load_config(tmp_path / "run.toml")
    config.run_dir = str(tmp_path / "stopped")
    stopped = Trainer(config)
    model = stopped.run(max_minutes=1e-9)
    assert model.is_file() and stopped.step == 0


def main() -> int:
    """Run the tests without pytest: one line per test, exit 1 if any failed."""
    if not torch.cuda.is_available():
        print("no CUDA GPU: every test skipped")
        return 0
    failed = 0
    for name, test in sorted((n, f) for n, f in globals().items() if n.startswith("test_") and callable(f)):
        try:
            if "tmp_path" in test.__code__.co_varnames[: test.__code__.co_argcount]:
                with tempfile.TemporaryDirectory() as folder:
                    test(Path(folder))
            else:
                test()
            print(f"PASSED {name}")
        except Exception:
            failed += 1
            print(f"FAILED {name}\n{traceback.format_exc()}")
    print(f"{failed} failed" if failed else "all passed")
    return 1 if failed else 0


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    sys.exit(main())

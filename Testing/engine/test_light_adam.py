"""LightAdam (the functional torch Adam) takes exactly torch.optim.Adam's steps, and skips the dynamo import."""
from __future__ import annotations

import subprocess
import sys

import torch

from avsm.optimisation.light_adam import LightAdam


def _run(make_optimiser, steps: int = 7) -> list[torch.Tensor]:
    torch.manual_seed(0)
    a = torch.randn(3, 3, dtype=torch.float64).requires_grad_(True)
    b = torch.randn(3, dtype=torch.float64).requires_grad_(True)
    target = torch.randn(3, 3, dtype=torch.float64)
    optimiser = make_optimiser([a, b])
    for _ in range(steps):
        optimiser.zero_grad()
        loss = ((a @ a.T - target) ** 2).sum() + (b ** 3).sum() + (a.sum() * b).pow(2).sum()
        loss.backward()
        optimiser.step()
    return [a.detach(), b.detach()]


def test_light_adam_matches_torch_adam_bit_for_bit():
    ours = _run(lambda params: LightAdam(params, lr=0.05))
    theirs = _run(lambda params: torch.optim.Adam(params, lr=0.05))
    for x, y in zip(ours, theirs):
        assert torch.equal(x, y)


def test_a_parameter_without_gradient_is_left_alone():
    a, b = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    optimiser = LightAdam([a, b], lr=0.1)
    (a ** 2).sum().backward()
    optimiser.step()
    assert torch.equal(b.detach(), torch.ones(2)) and bool((a.detach() < 1).all())


def test_the_affine_optimisation_does_not_import_dynamo():
    code = ("import sys, torch\n"
            "from avsm.optimisation.affine_opt import AffineParameters, optimise_affine\n"
            "from avsm.geometry import Grid\n"
            "g = Grid((8, 8, 8), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))\n"
            "x = torch.rand(1, 1, 8, 8, 8)\n"
            "start = AffineParameters.translation_only([1.0, 0, 0])\n"
            "optimise_affine(x, g, x, g, start, [7.0, 7.0, 7.0], scales=(1.0,), iterations=(2,))\n"
            "print('torch._dynamo' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("False")

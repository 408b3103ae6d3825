"""Adam through PyTorch's functional ``torch.optim.adam.adam``, without the ``torch.optim.Adam`` object.

Constructing any ``torch.optim`` optimiser imports ``torch._dynamo`` on first use (``torch._disable_dynamo``),
1.5-3 s of start-up in a fresh process: more than a network registration takes. The functional form runs
the same single-tensor update on the CPU (bit-identical, tested) without that import, so the short affine
refinement of the network methods does not pay it.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch.optim.adam import adam


class LightAdam:
    """Adam (no weight decay, no AMSGrad) over ``params``; ``zero_grad`` and ``step`` as ``torch.optim.Adam``."""

    def __init__(self, params: Sequence[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.params = list(params)
        self.lr, self.betas, self.eps = float(lr), betas, eps
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = [torch.tensor(0.0) for _ in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        adam([self.params[i] for i in live], [self.params[i].grad for i in live], [self.exp_avg[i] for i in live],
             [self.exp_avg_sq[i] for i in live], [], [self.steps[i] for i in live], foreach=False,
             capturable=False, differentiable=False, fused=None, grad_scale=None, found_inf=None, has_complex=False,
             amsgrad=False, beta1=self.betas[0], beta2=self.betas[1], lr=self.lr, weight_decay=0.0, eps=self.eps,
             maximize=False)

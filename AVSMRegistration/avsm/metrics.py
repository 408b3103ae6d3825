"""Evaluation metrics: label Dice (per label present in both maps, background excluded)."""
from __future__ import annotations

import numpy as np


def dice_per_label(warped_labels: np.ndarray, fixed_labels: np.ndarray) -> dict[int, float]:
    """Dice for every non-zero label present in both label maps (same shape, integer arrays)."""
    if warped_labels.shape != fixed_labels.shape:
        raise ValueError(f"label maps differ in shape: {warped_labels.shape} vs {fixed_labels.shape}")
    a = warped_labels.ravel().astype(np.int64)
    b = fixed_labels.ravel().astype(np.int64)
    shared = np.intersect1d(np.unique(a), np.unique(b))
    shared = shared[shared != 0]
    if shared.size == 0:
        return {}
    lut = np.full(int(max(a.max(), b.max())) + 1, -1, dtype=np.int64)
    lut[shared] = np.arange(shared.size)
    ia, ib = lut[a], lut[b]
    count_a = np.bincount(ia[ia >= 0], minlength=shared.size)
    count_b = np.bincount(ib[ib >= 0], minlength=shared.size)
    both = (ia == ib) & (ia >= 0)
    overlap = np.bincount(ia[both], minlength=shared.size)
    dice = 2.0 * overlap / np.maximum(count_a + count_b, 1)
    return {int(label): float(d) for label, d in zip(shared, dice)}


def mean_dice(per_label: dict[int, float]) -> float:
    return float(np.mean(list(per_label.values()))) if per_label else float("nan")

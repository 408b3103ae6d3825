"""The one-line summary shown after a run: time, device, folds, det(J) range, Dice."""
from __future__ import annotations

from .options import method_by_key


def summary_text(report: dict, seconds: float, moving_name: str, fixed_name: str) -> str:
    method = report.get("method", "")
    try:
        label = method_by_key(method).label
    except ValueError:
        label = method or "registration"
    parts = [f"{label}: '{moving_name}' -> '{fixed_name}' in {seconds:.1f} s on {report.get('device', '?')}"]
    if "fold_count" in report:
        fraction = report.get("fold_fraction", 0.0) or 0.0
        parts.append(f"folds {int(report['fold_count'])} ({100.0 * fraction:.3f} %)")
    if "det_jacobian_min" in report and "det_jacobian_max" in report:
        parts.append(f"det(J) {report['det_jacobian_min']:.2f}..{report['det_jacobian_max']:.2f}")
    if report.get("dice_mean") is not None:
        count = len(report.get("dice_per_label") or {})
        parts.append(f"Dice {report['dice_mean']:.3f}" + (f" over {count} labels" if count else ""))
    return "; ".join(parts) + "."

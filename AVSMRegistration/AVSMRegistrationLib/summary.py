"""The one-line summary shown after a run: preset or method, time, device, start and masks when given, folds,
det(J) range, Dice; the affine similarity when it was mutual information."""
from __future__ import annotations

from avsm.methods import METHODS, PRESETS


def run_label(report: dict) -> str:
    """What ran, from the engine's report: "preset 'fast' (AVSM network)", or the method's title alone."""
    method = report.get("method", "")
    title = METHODS[method].title if method in METHODS else (method or "registration")
    preset = report.get("preset")
    return f"Preset '{preset}' ({title})" if preset in PRESETS else title


def summary_text(report: dict, seconds: float, moving_name: str, fixed_name: str) -> str:
    parts = [f"{run_label(report)}: '{moving_name}' -> '{fixed_name}' in {seconds:.1f} s on {report.get('device', '?')}"]
    if report.get("initial_source") == "initial transform":
        parts.append("started from the initial transform")
    similarity = report.get("similarity") or {}
    if similarity.get("same_contrast") is False:
        parts.append(f"contrasts differ (sign agreement {similarity['contrast_agreement']:.2f}): mutual information")
    elif report.get("affine_similarity") == "mi":
        parts.append("affine by mutual information")
    if (report.get("network") or {}).get("networks_used") is False:
        parts.append("the affine optimisation in place of the networks across contrasts")
    if report.get("masks"):
        parts.append(f"compared inside the {' and '.join(report['masks'])} mask{'s' if len(report['masks']) > 1 else ''}")
    if "fold_count" in report:
        fraction = report.get("fold_fraction", 0.0) or 0.0
        parts.append(f"folds {int(report['fold_count'])} ({100.0 * fraction:.3f} %)")
    if "det_jacobian_min" in report and "det_jacobian_max" in report:
        parts.append(f"det(J) {report['det_jacobian_min']:.2f}..{report['det_jacobian_max']:.2f}")
    if report.get("dice_mean") is not None:
        count = len(report.get("dice_per_label") or {})
        parts.append(f"Dice {report['dice_mean']:.3f}" + (f" over {count} labels" if count else ""))
    return "; ".join(parts) + "."

"""The speed-accuracy chart: mean label Dice against seconds per pair (log axis), one point per method.

Drawn from the summary rows of :mod:`malf_accuracy` (``--chart PNG``), so every point comes from the same pairs
on the same machine in the same run. Error bars: Dice +- one standard deviation over the pairs; seconds from the
fastest to the slowest pair. Our methods and presets are drawn in one colour, the peers in another.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

from avsm.methods import PRESET_NAMES

PEERS = ("syn", "elastix", "greedy")
PEER_NAMES = {"syn": "ANTs SyN", "elastix": "elastix (affine + B-spline)", "greedy": "Greedy"}


def draw(summary: list[dict], rows: list[dict], path: str | Path, title: str) -> None:
    """Write the chart of ``summary`` (``malf_accuracy.summarise``) to ``path`` (PNG); ``rows`` give the time spread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    figure, axes = plt.subplots(figsize=(7.5, 5), dpi=120)
    for entry in summary:
        if not entry.get("pairs"):
            continue
        method = entry["method"]
        seconds = [r["seconds"] for r in rows if r["method"] == method and not r.get("error")]
        mean = entry["seconds"]
        peer = method in PEERS
        axes.errorbar(mean, entry["dice_mean"], yerr=entry["dice_sd"],
                      xerr=[[mean - min(seconds)], [max(seconds) - mean]], fmt="s" if peer else "o",
                      color="tab:gray" if peer else "tab:blue", capsize=3, markersize=7)
        label = PEER_NAMES.get(method, f"preset {method}" if method in PRESET_NAMES else method)
        axes.annotate(label, (mean, entry["dice_mean"]), textcoords="offset points", xytext=(6, 6), fontsize=8)
    axes.set_xscale("log")
    # plain numbers (1, 2, 5, 10, ...) rather than 2 x 10^0 labels that overlap
    axes.xaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel("seconds per pair, end to end (log scale)")
    axes.set_ylabel("mean label Dice")
    axes.set_title(textwrap.fill(title, 95), fontsize=8)
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)

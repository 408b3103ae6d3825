"""The registration methods and the presets built on them, each defined once.

``avsm.register``, the command line, batch mode, the benchmarks and the Slicer module read these tables; the
default (``DEFAULT_PRESET``) is written here and nowhere else. A method is an algorithm; a preset is a method
with settings, named for what the user wants (``fast``, ``default``, ``accurate``). Each preset carries a one-line
summary of its measured accuracy and time for the panel; the tables and the commands that made them are in
``docs/benchmarks.md``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Optional

from .errors import AVSMError


@dataclass(frozen=True)
class Method:
    """A registration algorithm; ``network`` methods need a trained model (bundled or ``--model``)."""

    name: str
    title: str
    description: str
    network: bool


METHODS: Mapping[str, Method] = MappingProxyType({m.name: m for m in (
    Method("avsm", "AVSM network", "Affine and multi-step vSVF networks (one pass), optionally refined for the pair "
           "by instance optimisation.", network=True),
    Method("voxelmorph", "VoxelMorph network", "Affine network, then a VoxelMorph U-net (diffeomorphic, one pass).",
           network=True),
    Method("vsvf-opt", "vSVF optimisation", "No network: multi-scale affine optimisation, then the vSVF momentum "
           "optimised for this pair.", network=False),
    Method("affine", "Affine optimisation", "No network: multi-scale affine optimisation only.", network=False),
)})
METHOD_NAMES: tuple[str, ...] = tuple(METHODS)
# The affine stage's similarities (avsm.losses.affine_similarity): mk-LNCC, or normalised mutual information for
# images of different contrasts.
SIMILARITIES: tuple[str, ...] = ("lncc", "mi")
NETWORK_METHODS: tuple[str, ...] = tuple(name for name, m in METHODS.items() if m.network)

# Instance-optimisation iterations of the default preset (chosen on the validation subjects, see
# benchmarks/tuning/README.md).
DEFAULT_INSTANCE_OPT = 30


@dataclass(frozen=True)
class Preset:
    """A method with settings: ``options`` are ``avsm.register`` keyword arguments that the caller may override;
    ``measured``: its accuracy and time as the benchmarks measured them (docs/benchmarks.md), for the panel."""

    name: str
    method: str
    description: str
    options: Mapping[str, Any] = field(default_factory=dict)
    measured: str = ""


PRESETS: Mapping[str, Preset] = MappingProxyType({p.name: p for p in (
    Preset("fast", "avsm", "One pass of the AVSM network: a few seconds, below the optimisation methods in accuracy.",
           {"instance_opt": 0},
           "held-out brain pairs: Dice 0.478 against ANTs SyN's 0.561; 5 s end to end on a 1 mm pair (2 CPU threads)"),
    Preset("default", "avsm", f"The AVSM network, then {DEFAULT_INSTANCE_OPT} iterations of instance optimisation for "
           "this pair at the network's grid: SyN-level accuracy in seconds.", {"instance_opt": DEFAULT_INSTANCE_OPT},
           "held-out brain pairs: Dice 0.569 against ANTs SyN's 0.561 (above it on 75 of 90 pairs); 11 s against "
           "SyN's 71 s end to end on a 1 mm pair (2 CPU threads)"),
    Preset("accurate", "vsvf-opt", "vSVF optimised for this pair from an optimised affine: the most accurate, "
           "under a minute.", {},
           "held-out brain pairs: Dice 0.598 against ANTs SyN's 0.568 (10 pairs); about 50 s end to end on a 1 mm "
           "pair (2 CPU threads)"),
)})
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)
DEFAULT_PRESET = "default"


def check_method_name(method: str) -> Method:
    """The method called ``method``, or an error listing the methods."""
    if method not in METHODS:
        raise AVSMError(f"unknown method '{method}'; choose one of {', '.join(METHOD_NAMES)}")
    return METHODS[method]


def resolve(preset: Optional[str], method: Optional[str]) -> tuple[str, Mapping[str, Any]]:
    """(method, preset options) for a call that names a preset, a method, both or neither.

    Neither: the default preset. A method alone: that method with its own defaults. Both: the preset, whose
    method must be the one named.
    """
    if preset is None and method is not None:
        check_method_name(method)
        return method, {}
    name = DEFAULT_PRESET if preset is None else preset
    if name not in PRESETS:
        raise AVSMError(f"unknown preset '{name}'; choose one of {', '.join(PRESET_NAMES)}")
    chosen = PRESETS[name]
    if method is not None and method != chosen.method:
        check_method_name(method)
        raise AVSMError(f"preset '{name}' runs method '{chosen.method}', not '{method}': give one of --preset and --method")
    return chosen.method, chosen.options

"""The registration methods and the presets built on them, each defined once.

``avsm.register``, the command line, batch mode, the benchmarks and the Slicer module read these tables; the
default (``DEFAULT_PRESET``) is written here and nowhere else. A method is an algorithm; a preset is a method
with settings, named for what the user wants (``fast``, ``default``, ``accurate``). Each preset carries a one-line
summary of its measured accuracy and time for the panel; the tables and the commands that made them are in
``docs/benchmarks.md``.

Each method declares the options it takes (:class:`Option`: an ``avsm.register`` keyword and, most of them, an
``avsm register`` flag); an option's name has one meaning for every method that takes it, and a method refuses
the options it does not declare (:func:`check_options`). The inputs and the settings that every method takes
(images, labels, masks, initial transform, device, working spacing, similarity) are not declared per method.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Optional

from .errors import AVSMError


@dataclass(frozen=True)
class Option:
    """An option of one or more methods: the ``avsm.register`` keyword ``name`` and, when ``command_line``, the
    flag ``--name-with-dashes`` whose values are parsed as ``type`` (``int`` options take whole numbers only).
    ``default`` None: decided at run time, as ``description`` says (the model's own count, the optimiser's
    schedule); ``minimum``: the smallest number accepted."""

    name: str
    type: type
    description: str
    default: Any = None
    minimum: Optional[int] = None
    command_line: bool = True

    @property
    def flag(self) -> Optional[str]:
        return "--" + self.name.replace("_", "-") if self.command_line else None

    @property
    def label(self) -> str:
        """How a message names the option: the keyword, and the flag when there is one."""
        return f"{self.name} ({self.flag})" if self.command_line else self.name

    def check(self, value: Any) -> None:
        """Refuse a value of the wrong type or below ``minimum``, in one line naming the option."""
        if self.type is int and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
            raise AVSMError(f"{self.name} must be a whole number (got {value!r})")
        if self.minimum is not None and value < self.minimum:
            raise AVSMError(f"{self.name} must be >= {self.minimum} (got {value})")


# Instance-optimisation iterations of the default preset (chosen on the validation subjects, see
# benchmarks/tuning/README.md).
DEFAULT_INSTANCE_OPT = 30

MODEL = Option("model", str, "model name or checkpoint path (default: the method's bundled model)")
NETWORK_AFFINE_STEPS = Option("network_affine_steps", int, "recurrent steps of the affine network at test time "
                              "(default: the model's own)", minimum=0)
NETWORK_VSVF_STEPS = Option("network_vsvf_steps", int, "vSVF steps of the deformable network at test time "
                            "(default: the model's own; 0: the affine network alone)", minimum=0)
AFFINE_REFINE = Option("affine_refine", int, "iterations refining the affine network's result for this pair "
                       "before the deformable network, two thirds at the coarsest level, which goes on up to 5 times "
                       "as long while its loss still falls; when the network's deformation is not kept, a few more "
                       "at the affine method's 3 mm grid (0: the network's affine as it is)", default=30, minimum=0)
INSTANCE_OPT = Option("instance_opt", int, "iterations of one more vSVF step optimised for this pair at the "
                      "network's grid after the network (instance optimisation; 0: none)", default=0, minimum=0)
AFFINE_ITERATIONS = Option("affine_iterations", int, "Adam iterations of the affine optimisation at each level of "
                           "its image pyramid (default: the optimiser's schedule, most at the coarsest level)",
                           minimum=0)
VSVF_ITERATIONS = Option("vsvf_iterations", int, "Adam iterations of each step of the vSVF optimisation, all at the "
                         "working grid (default: those of the vSVF settings)", minimum=0)
VSVF_SETTINGS = Option("vsvf_settings", object, "avsm.optimisation.VSVFSettings of the vSVF optimisation (vsvf-opt) "
                       "or of the instance optimisation (network methods; its iteration count is instance_opt, "
                       "unless its levels give a schedule)", command_line=False)


# The options that choose a network method's model or set its networks. Across a change of contrast (similarity
# "mi") a network method runs the affine optimisation in place of the bundled networks unless one of these is given:
# there they gained nothing over the affine on brain pairs and took whole-head pairs below it, which the
# mutual-information check of deformations did not catch (docs/benchmarks.md, whole heads).
NETWORK_CHOICES: tuple[str, ...] = (MODEL.name, NETWORK_AFFINE_STEPS.name, NETWORK_VSVF_STEPS.name, AFFINE_REFINE.name)


@dataclass(frozen=True)
class Method:
    """A registration algorithm and the options it takes; ``network`` methods need a trained model (bundled or
    ``--model``); ``working_spacing_mm``: its working grid when none is asked for (None: the model's)."""

    name: str
    title: str
    description: str
    network: bool
    options: tuple[Option, ...]
    working_spacing_mm: Optional[float] = None

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(option.name for option in self.options)


METHODS: Mapping[str, Method] = MappingProxyType({m.name: m for m in (
    Method("avsm", "AVSM network", "Affine and multi-step vSVF networks (one pass), optionally refined for the pair "
           "by instance optimisation.", network=True,
           options=(MODEL, NETWORK_AFFINE_STEPS, NETWORK_VSVF_STEPS, AFFINE_REFINE, INSTANCE_OPT, VSVF_SETTINGS)),
    Method("voxelmorph", "VoxelMorph network", "Affine network, then a VoxelMorph U-net (diffeomorphic, one pass).",
           network=True, options=(MODEL, NETWORK_AFFINE_STEPS, AFFINE_REFINE, INSTANCE_OPT, VSVF_SETTINGS)),
    Method("vsvf-opt", "vSVF optimisation", "No network: multi-scale affine optimisation, then the vSVF momentum "
           "optimised for this pair.", network=False, options=(AFFINE_ITERATIONS, VSVF_ITERATIONS, VSVF_SETTINGS),
           working_spacing_mm=1.5),
    Method("affine", "Affine optimisation", "No network: multi-scale affine optimisation only.", network=False,
           options=(AFFINE_ITERATIONS,), working_spacing_mm=3.0),
)})
METHOD_NAMES: tuple[str, ...] = tuple(METHODS)
# How the images are compared, named by the affine stage's similarity (avsm.losses.affine_similarity): mk-LNCC, or
# normalised mutual information for images of different contrasts. DEFORMABLE_SIMILARITY gives the deformable
# stages' loss for each (avsm.optimisation.vsvf_opt.deformable_similarity): squared local correlation, or normalised
# gradient fields, which score coinciding edges whatever the order of the tissues' intensities (T1 against FLAIR).
SIMILARITIES: tuple[str, ...] = ("lncc", "mi")
DEFORMABLE_SIMILARITY: Mapping[str, str] = MappingProxyType({"lncc": "lncc", "mi": "ngf"})
# What a caller may ask for: one of SIMILARITIES, or "auto" (the default): local correlation while the roughly aligned
# images correlate in sign like two scans of one contrast, else mutual information
# (avsm.optimisation.contrast_check).
AUTO_SIMILARITY = "auto"
SIMILARITY_CHOICES: tuple[str, ...] = (AUTO_SIMILARITY, *SIMILARITIES)
DEFAULT_SIMILARITY = AUTO_SIMILARITY
NETWORK_METHODS: tuple[str, ...] = tuple(name for name, m in METHODS.items() if m.network)
OPTIONS: Mapping[str, Option] = MappingProxyType({o.name: o for m in METHODS.values() for o in m.options})
"""Every method's options by name, each once, in the order the methods declare them."""


@dataclass(frozen=True)
class Preset:
    """A method with settings: ``options`` are options of its method that the caller may override;
    ``measured``: its accuracy and time as the benchmarks measured them (docs/benchmarks.md), for the panel."""

    name: str
    method: str
    description: str
    options: Mapping[str, Any] = field(default_factory=dict)
    measured: str = ""


PRESETS: Mapping[str, Preset] = MappingProxyType({p.name: p for p in (
    Preset("fast", "avsm", "One pass of the AVSM network: a few seconds, below the optimisation methods in accuracy.",
           {"instance_opt": 0},
           "held-out brain pairs: Dice 0.481 against ANTs SyN's 0.561; 3.1 s end to end on a 1 mm pair "
           "(2 CPU threads)"),
    Preset("default", "avsm", f"The AVSM network, then {DEFAULT_INSTANCE_OPT} iterations of instance optimisation for "
           "this pair at the network's grid: SyN-level accuracy in seconds.", {"instance_opt": DEFAULT_INSTANCE_OPT},
           "held-out brain pairs: Dice 0.575 against ANTs SyN's 0.561 (above it on 84 of 90 pairs); 4.3 s against "
           "SyN's 38 s end to end on a 1 mm pair (2 CPU threads); whole-head pairs: Dice 0.674 against SyN's 0.622 "
           "(T1), 0.684 against 0.587 (T2-like), no option"),
    Preset("accurate", "vsvf-opt", "vSVF optimised for this pair at 1.5 mm from an optimised affine, a coarse step "
           "then a fine one: the most accurate, about a minute.", {},
           "held-out brain pairs: Dice 0.649 against ANTs SyN's 0.561 (above it on 90 of 90 pairs, no folds), "
           "Greedy's 0.655 against 0.657 on 10 of them, Greedy folding; 44 s against SyN's 38 s end to end on a 1 mm "
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


def methods_taking(name: str) -> tuple[str, ...]:
    """The methods that declare the option ``name``."""
    return tuple(method.name for method in METHODS.values() if name in method.option_names)


def option_help(option: Option) -> str:
    """One line for ``--help`` and the panel: the methods that take ``option``, what it is, its default and the
    presets that set it."""
    text = f"{', '.join(methods_taking(option.name))}: {option.description}"
    if option.default is not None:
        text += f"; default {option.default}"
    presets = ", ".join(f"{p.name} {p.options[option.name]}" for p in PRESETS.values() if option.name in p.options)
    if presets:
        text += f" (presets: {presets})"
    return text


def check_options(method: str, given: Mapping[str, Any], preset_options: Mapping[str, Any] = MappingProxyType({})
                  ) -> dict[str, Any]:
    """Every option ``method`` declares, with its value: ``given`` (None: not given), else the preset's, else the
    option's default. Refuses, in one line naming the option and the method, an option given that the method
    does not declare, and values of the wrong type or range."""
    declared = check_method_name(method).option_names
    for name, value in given.items():
        if value is None:
            continue
        if name not in OPTIONS:
            raise AVSMError(f"unknown option '{name}'; the options are {', '.join(OPTIONS)}")
        if name not in declared:
            raise AVSMError(f"option {OPTIONS[name].label} does not apply to method '{method}', which takes "
                            f"{', '.join(declared)}")
    values = {}
    for option in METHODS[method].options:
        value = given.get(option.name)
        if value is None:
            value = preset_options.get(option.name, option.default)
        if value is not None:
            option.check(value)
        values[option.name] = value
    return values

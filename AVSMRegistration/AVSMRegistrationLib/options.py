"""The panel's method choices, devices and run options: one typed object, validated once.

The presets and methods, and the default, are the engine's (``avsm.methods``); this module only turns them
into the panel's list. The same defaults serve the panel, the console call and the background command line,
so the three entry points cannot drift apart.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from avsm.errors import AVSMError
# torch-free: import avsm loads no pipeline
from avsm.methods import DEFAULT_PRESET, METHODS, PRESETS, SIMILARITIES, resolve

from .errors import RegistrationInputError


@dataclass(frozen=True)
class Choice:
    """One entry of the panel's method box: a preset, or (advanced) a method alone with its own defaults.

    ``name`` is the preset's or the method's name (the parameter node stores it; preset and method names never
    overlap); exactly one of ``preset`` and ``method`` is set; ``network``: the method it runs needs a model.
    """

    name: str
    preset: str | None
    method: str | None
    label: str
    description: str
    network: bool


def _preset_choice(name: str) -> Choice:
    preset = PRESETS[name]
    method = METHODS[preset.method]
    label = f"{name.capitalize()}: {method.title}" + (" + instance optimisation"
                                                      if preset.options.get("instance_opt") else "")
    measured = getattr(preset, "measured", "")
    description = preset.description + (f" Measured: {measured}." if measured else "")
    return Choice(name, name, None, label, description, method.network)


def _method_choice(name: str) -> Choice:
    method = METHODS[name]
    return Choice(name, None, name, f"Method: {method.title}", method.description, method.network)


CHOICES: tuple[Choice, ...] = (tuple(_preset_choice(name) for name in PRESETS)
                               + tuple(_method_choice(name) for name in METHODS))
"""The presets first, then the methods for advanced use, in ``avsm.methods``' order."""
DEFAULT_CHOICE = DEFAULT_PRESET


def choice_by_name(name: str) -> Choice:
    for choice in CHOICES:
        if choice.name == name:
            return choice
    raise RegistrationInputError(f"Unknown preset or method '{name}'; choose one of: "
                                 f"{', '.join(c.name for c in CHOICES)}.")


DEVICES = ("auto", "cpu", "cuda")
"""auto: the GPU when torch sees one, the CPU otherwise."""

SIMILARITY_LABELS = {"lncc": "Same contrast (local correlation)",
                     "mi": "Different contrasts, e.g. T1 and T2 (mutual information)"}
"""The panel's Contrast box: the affine stage's similarity (``avsm.methods.SIMILARITIES``) as the panel says it."""
DEFAULT_SIMILARITY = SIMILARITIES[0]
"""The engine's default (mk-LNCC, same contrast)."""

NETWORK_OPTIONS = (("model", "A model"), ("affine_refine", "Affine refinement"),
                   ("instance_opt", "Instance optimisation"))
"""Options that only the methods with a network take, with how a refusal names them."""


@dataclass(frozen=True)
class RegistrationOptions:
    """Engine options. ``preset`` and ``method`` as in ``avsm.register``: neither runs ``DEFAULT_PRESET``, a
    method alone runs that method with its own defaults, both must agree. Other None values mean "the
    preset's or the method's default"."""

    preset: str | None = None
    method: str | None = None
    device: str = "auto"
    model: str | None = None
    affine_steps: int | None = None
    vsvf_steps: int | None = None
    instance_opt: int | None = None
    working_spacing: float | None = None
    affine_refine: int | None = None  # network methods; None: the engine's default (30), 0: off
    similarity: str | None = None  # the affine stage's: "lncc" or "mi"; None: the engine's default (lncc)

    def validated(self) -> "RegistrationOptions":
        """These options, checked, with the default preset named when neither preset nor method is."""
        try:
            method, _ = resolve(self.preset, self.method)  # the engine's one-line refusal, as it is
        except AVSMError as error:
            raise RegistrationInputError(str(error)) from None
        if self.device not in DEVICES:
            raise RegistrationInputError(f"Unknown device '{self.device}'; choose one of: {', '.join(DEVICES)}.")
        for name in ("affine_steps", "vsvf_steps", "instance_opt", "affine_refine"):
            value = getattr(self, name)
            if value is not None and (int(value) != value or value < 0):
                raise RegistrationInputError(f"{name.replace('_', ' ')} must be a whole number >= 0, got {value}.")
        if not METHODS[method].network:
            for name, what in NETWORK_OPTIONS:
                if getattr(self, name) not in (None, ""):
                    raise RegistrationInputError(f"{what} applies to the network methods, not to '{method}'.")
        if self.similarity is not None and self.similarity not in SIMILARITIES:
            raise RegistrationInputError(f"Unknown similarity '{self.similarity}'; choose one of: "
                                         f"{', '.join(SIMILARITIES)}.")
        if self.working_spacing is not None and not self.working_spacing > 0:
            raise RegistrationInputError(f"Working spacing must be > 0 mm, got {self.working_spacing}.")
        if self.model:
            path = Path(self.model)
            if (path.suffix or "/" in self.model or "\\" in self.model) and not path.is_file():
                raise RegistrationInputError(f"Model file '{self.model}' does not exist.")
        if self.preset is None and self.method is None:
            return self.replace(preset=DEFAULT_PRESET)
        return self

    def engine_kwargs(self) -> dict:
        """Keyword arguments of `avsm.register` (only the ones that are set)."""
        kwargs = {}
        for name in ("preset", "method", "device", "model", "affine_steps", "vsvf_steps", "instance_opt",
                     "working_spacing", "affine_refine", "similarity"):
            value = getattr(self, name)
            if value not in (None, ""):
                kwargs[name] = value
        return kwargs

    def command_line(self) -> list[str]:
        """The same options as `avsm register` arguments."""
        args = []
        for name, value in self.engine_kwargs().items():
            args += ["--" + name.replace("_", "-"), str(value)]
        return args

    @classmethod
    def from_panel(cls, choice: str, device: str, model: str, affine_steps: int, vsvf_steps: int,
                   instance_opt: int, affine_refine: int, similarity: str | None = None) -> "RegistrationOptions":
        """The panel's values: 0 steps or iterations and -1 affine refinement mean "the default", an empty
        model the bundled one; the instance-optimisation and affine-refinement boxes (and the model) are
        ignored for a choice whose method has no network (the engine refuses them there); ``similarity`` (the
        Contrast box) is passed only when it is not the engine's default, so the command line stays as short."""
        chosen = choice_by_name(choice)
        network = chosen.network
        return cls(preset=chosen.preset, method=chosen.method, device=device,
                   model=(model.strip() or None) if network else None,
                   affine_steps=affine_steps or None, vsvf_steps=vsvf_steps or None,
                   instance_opt=(instance_opt or None) if network else None,
                   affine_refine=int(affine_refine) if network and affine_refine >= 0 else None,
                   similarity=similarity if similarity and similarity != DEFAULT_SIMILARITY else None)

    def replace(self, **changes) -> "RegistrationOptions":
        return dataclasses.replace(self, **changes)


OUTPUT_KEYS = ("transform", "affine", "warped", "warpedLabels", "jacobian", "folds", "inverse")
"""Outputs of a run. Each is requested with True (create a new node), False/None (skip) or an
existing node (its content is replaced once the run has succeeded)."""

OPTIONAL_OUTPUT_KEYS = ("inverse",)
"""Outputs that are off unless asked for. `inverse` maps fixed -> moving in Slicer's sense (put
the fixed volume under it to see it on the moving volume); the engine computes it exactly."""

GRID_SPACING_MM = 10.0
"""Deformation-grid line spacing in the slice views."""

"""The panel's method choices, devices and run options: one typed object, validated once.

The presets and methods, the options each method takes, and the default, are the engine's (``avsm.methods``);
this module only turns them into the panel's list and boxes. The same defaults and checks serve the panel, the
console call and the background command line, so the three entry points cannot drift apart.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from avsm.errors import AVSMError
# torch-free: import avsm loads no pipeline
from avsm.methods import (DEFAULT_PRESET, DEFAULT_SIMILARITY, METHODS, OPTIONS, PRESETS, SIMILARITY_CHOICES, Option,
                          check_options, option_help, resolve)

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

SIMILARITY_LABELS = {"auto": "Detect from the images",
                     "lncc": "Same contrast (local correlation)",
                     "mi": "Different contrasts, e.g. T1 and T2 (mutual information)"}
"""The panel's Contrast box: the similarity (``avsm.methods.SIMILARITY_CHOICES``) as the panel says it; the first is
the engine's default (``avsm.methods.DEFAULT_SIMILARITY``)."""

PANEL_BOXES = {"affineSteps": ("network_affine_steps", "affine_iterations"),
               "vsvfSteps": ("network_vsvf_steps", "vsvf_iterations"),
               "instanceOptIterations": ("instance_opt",), "affineRefine": ("affine_refine",)}
"""The panel's Advanced boxes (parameter-node names) and the engine options each one sets: the one that the
chosen method takes (``avsm.methods``); for a method that takes none of them the box is ignored."""

METHOD_OPTIONS = tuple(name for name, option in OPTIONS.items() if option.command_line)
"""The methods' options that the panel, the console call and the command line pass (all but Python objects)."""


def box_option(box: str, method: str) -> Option | None:
    """The option that the panel's ``box`` sets when ``method`` runs, or None."""
    taken = METHODS[method].option_names
    return next((OPTIONS[name] for name in PANEL_BOXES[box] if name in taken), None)


def box_state(box: str, choice: str) -> tuple[bool, str]:
    """(enabled, tooltip) of the panel's ``box`` when the preset or method ``choice`` is chosen: the tooltip is
    the declaration's help of the option it sets."""
    chosen = choice_by_name(choice)
    method, _ = resolve(chosen.preset, chosen.method)
    option = box_option(box, method)
    if option is None:
        return False, f"Not used by {METHODS[method].title}."
    return True, f"{option_help(option)}. 'default': the preset's or the method's own."


@dataclass(frozen=True)
class RegistrationOptions:
    """Engine options. ``preset`` and ``method`` as in ``avsm.register``: neither runs ``DEFAULT_PRESET``, a
    method alone runs that method with its own defaults, both must agree. Other None values mean "the
    preset's or the method's default"."""

    preset: str | None = None
    method: str | None = None
    device: str = "auto"
    model: str | None = None
    network_affine_steps: int | None = None  # the method's options, as avsm.methods declares them
    network_vsvf_steps: int | None = None
    affine_refine: int | None = None
    instance_opt: int | None = None
    affine_iterations: int | None = None
    vsvf_iterations: int | None = None
    working_spacing: float | None = None
    similarity: str | None = None  # "auto", "lncc" or "mi"; None: the engine's default (auto)

    def validated(self) -> "RegistrationOptions":
        """These options, checked, with the default preset named when neither preset nor method is."""
        try:  # the engine's one-line refusals, as they are
            method, preset_options = resolve(self.preset, self.method)
            check_options(method, {name: self._given(name) for name in METHOD_OPTIONS}, preset_options)
        except AVSMError as error:
            raise RegistrationInputError(str(error)) from None
        if self.device not in DEVICES:
            raise RegistrationInputError(f"Unknown device '{self.device}'; choose one of: {', '.join(DEVICES)}.")
        if self.similarity is not None and self.similarity not in SIMILARITY_CHOICES:
            raise RegistrationInputError(f"Unknown similarity '{self.similarity}'; choose one of: "
                                         f"{', '.join(SIMILARITY_CHOICES)}.")
        if self.working_spacing is not None and not self.working_spacing > 0:
            raise RegistrationInputError(f"Working spacing must be > 0 mm, got {self.working_spacing}.")
        if self.model:
            path = Path(self.model)
            if (path.suffix or "/" in self.model or "\\" in self.model) and not path.is_file():
                raise RegistrationInputError(f"Model file '{self.model}' does not exist.")
        if self.preset is None and self.method is None:
            return self.replace(preset=DEFAULT_PRESET)
        return self

    def _given(self, name: str):
        """The value of field ``name``, None when it is not set (an empty model is not set)."""
        value = getattr(self, name)
        return None if value == "" else value

    def engine_kwargs(self) -> dict:
        """Keyword arguments of `avsm.register` (only the ones that are set)."""
        names = ("preset", "method", "device", *METHOD_OPTIONS, "working_spacing", "similarity")
        return {name: self._given(name) for name in names if self._given(name) is not None}

    def command_line(self) -> list[str]:
        """The same options as `avsm register` arguments."""
        args = []
        for name, value in self.engine_kwargs().items():
            args += ["--" + name.replace("_", "-"), str(value)]
        return args

    @classmethod
    def from_panel(cls, choice: str, device: str, model: str, boxes: dict, similarity: str | None = None
                   ) -> "RegistrationOptions":
        """The panel's values: ``boxes`` by parameter-node name (``PANEL_BOXES``), where 0 steps or iterations
        and -1 affine refinement mean "the default"; an empty model means the bundled one. Each box sets the
        option of its own that the chosen method takes (``box_option``) and is ignored for a method that takes
        none (the engine would refuse it), and so is the model; ``similarity`` (the Contrast box) is passed only
        when it is not the engine's default, so the command line stays as short."""
        chosen = choice_by_name(choice)
        method, _ = resolve(chosen.preset, chosen.method)
        options = {}
        for box, value in boxes.items():
            option = box_option(box, method)
            if option is not None and (value >= 0 if box == "affineRefine" else value > 0):
                options[option.name] = int(value)
        if "model" in METHODS[method].option_names:
            options["model"] = model.strip() or None
        return cls(preset=chosen.preset, method=chosen.method, device=device,
                   similarity=similarity if similarity and similarity != DEFAULT_SIMILARITY else None, **options)

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

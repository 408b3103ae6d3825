"""Registration methods, devices and run options: one typed object, validated once.

The same defaults serve the panel, the console call and the background command line, so the
three entry points cannot drift apart.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from avsm.checkpoints import models_dir  # torch-free: import avsm loads no pipeline

from .errors import RegistrationInputError


@dataclass(frozen=True)
class Method:
    key: str          # name passed to the engine (`avsm register --method KEY`)
    label: str        # what the panel shows
    description: str


METHODS: tuple[Method, ...] = (
    Method("avsm", "AVSM (affine + vSVF network)", "Recurrent affine network followed by the vSVF network."),
    Method("affine", "Affine only", "Multi-scale affine optimisation (no network): a linear transform."),
    Method("voxelmorph", "VoxelMorph", "Affine network followed by VoxelMorph (diffeomorphic)."),
    Method("vsvf-opt", "vSVF optimisation", "No network: optimise the vSVF momentum for this pair (slower, no model)."),
)
METHOD_KEYS = tuple(m.key for m in METHODS)
NETWORK_METHOD_KEYS = ("avsm", "voxelmorph")
MODELS_MANIFEST = models_dir() / "manifest.json"  # the engine's bundled models (package data of avsm)


def default_method(manifest: Path = MODELS_MANIFEST) -> str:
    """The method the panel and the console start from: the models manifest's ``default_method``.

    The manifest names it from the measured accuracy of the models it ships (the bundled CPU-trained AVSM
    model is below vSVF optimisation on the held-out pairs, so it names "vsvf-opt"). A network method is
    accepted only when a model of that method ships; without a manifest the default is "vsvf-opt", the
    method that needs no model. A shipped model that beats "vsvf-opt" makes its method the default through the
    manifest entry.
    """
    import json

    try:
        manifest_data = json.loads(manifest.read_text())
        models = manifest_data["models"]
        wanted = manifest_data.get("default_method", "vsvf-opt")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "vsvf-opt"
    if wanted in ("affine", "vsvf-opt"):
        return wanted
    if wanted in METHOD_KEYS and any(isinstance(m, dict) and m.get("method") == wanted for m in models):
        return wanted
    return "vsvf-opt"


DEFAULT_METHOD = default_method()

DEVICES = ("auto", "cpu", "cuda")
"""auto: the GPU when torch sees one, the CPU otherwise."""


def method_by_key(key: str) -> Method:
    for method in METHODS:
        if method.key == key:
            return method
    raise RegistrationInputError(f"Unknown method '{key}'; choose one of: {', '.join(METHOD_KEYS)}.")


@dataclass(frozen=True)
class RegistrationOptions:
    """Engine options. None means "the engine's default for this method"."""

    method: str = DEFAULT_METHOD
    device: str = "auto"
    model: str | None = None
    affine_steps: int | None = None
    vsvf_steps: int | None = None
    instance_opt: int | None = None
    working_spacing: float | None = None
    affine_refine: int | None = None  # network methods; None: the engine's default (30), 0: off

    def validated(self) -> "RegistrationOptions":
        method_by_key(self.method)
        if self.device not in DEVICES:
            raise RegistrationInputError(f"Unknown device '{self.device}'; choose one of: {', '.join(DEVICES)}.")
        for name in ("affine_steps", "vsvf_steps", "instance_opt", "affine_refine"):
            value = getattr(self, name)
            if value is not None and (int(value) != value or value < 0):
                raise RegistrationInputError(f"{name.replace('_', ' ')} must be a whole number >= 0, got {value}.")
        if self.affine_refine is not None and self.method not in NETWORK_METHOD_KEYS:
            raise RegistrationInputError(f"Affine refinement applies to the network methods, not to '{self.method}'.")
        if self.working_spacing is not None and not self.working_spacing > 0:
            raise RegistrationInputError(f"Working spacing must be > 0 mm, got {self.working_spacing}.")
        if self.model:
            path = Path(self.model)
            if (path.suffix or "/" in self.model or "\\" in self.model) and not path.is_file():
                raise RegistrationInputError(f"Model file '{self.model}' does not exist.")
        return self

    def engine_kwargs(self) -> dict:
        """Keyword arguments of `avsm.register` (only the ones that are set)."""
        kwargs = {"method": self.method, "device": self.device}
        for name in ("model", "affine_steps", "vsvf_steps", "instance_opt", "working_spacing", "affine_refine"):
            value = getattr(self, name)
            if value not in (None, ""):
                kwargs[name] = value
        return kwargs

    def command_line(self) -> list[str]:
        """The same options as `avsm register` arguments."""
        args = ["--method", self.method, "--device", self.device]
        for name, value in self.engine_kwargs().items():
            if name in ("method", "device"):
                continue
            args += ["--" + name.replace("_", "-"), str(value)]
        return args

    @staticmethod
    def affine_refine_from_panel(method: str, value: int) -> int | None:
        """The panel's spin box: -1 ('default') lets the engine choose, 0 turns the refinement off; the
        box is ignored (None) for the methods without a network."""
        return None if value < 0 or method not in NETWORK_METHOD_KEYS else int(value)

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

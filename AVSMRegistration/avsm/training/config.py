"""``avsm train`` configuration: one typed object loaded from TOML and validated once, up front.

Sections: top level (run folder, seed), ``[data]`` (:class:`DataConfig`), ``[network]``
(:class:`avsm.networks.NetworkConfig`), ``[train]`` (:class:`TrainSettings`). Every field is documented in
its ``doc`` metadata (``avsm train --describe`` prints them). An unknown or mistyped field is an
:class:`AVSMError` naming it (``data.image_folder: expected str, got int``). Relative paths are relative
to the folder of the configuration file.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import AVSMError
from ..losses import LNCCScale
from ..networks.models import NetworkConfig, doc


@dataclass
class DataConfig:
    image_folder: str = doc("", "folder of training images (empty: none); see image_pattern")
    image_pattern: str = doc("*.nii.gz", "glob of image files inside image_folder")
    label_folder: str = doc("", "folder of label maps with the images' file names (empty: image_folder)")
    label_name_replace: tuple[str, ...] = doc((), "[old, new]: a label file name is the image's with old -> new "
                                                   "(e.g. ['_SS', '_glm']); empty and no label_folder: no labels")
    csv: str = doc("", "CSV file with an 'image' column and an optional 'labels' column (paths relative to it)")
    subjects: tuple[str, ...] = doc((), "keep only files whose name starts with one of these ids (empty: all)")
    held_out: tuple[str, ...] = doc((), "ids (file-name prefixes) that must never be used: skipped in folders, "
                                         "an error when a CSV lists them")
    validation_count: int = doc(2, "the last N real subjects (sorted by name) are kept for validation only")
    synthetic_folder: str = doc("", "folder of label maps (e.g. synthseg_label_maps) for synthesised pairs")
    synthetic_pattern: str = doc("*.nii.gz", "glob of label maps inside synthetic_folder")
    synthetic_fraction: float = doc(0.0, "probability that a training pair is synthetic (1.0: synthetic only)")
    synthetic_brain_only: bool = doc(True, "drop synthetic labels >= 100 (extra-cerebral) so images look skull-stripped")
    working_spacing_mm: float = doc(4.0, "isotropic spacing of the working grid (stored in the model)")
    grid_shape: tuple[int, ...] = doc((48, 56, 48), "training grid (D, H, W) voxels, centred on each image's "
                                                    "centre of mass")
    cache_dir: str = doc("", "where pre-processed volumes are cached (empty: RUN_DIR/cache)")
    tensor_cache: str = doc("", "one torch file holding every volume already on the training grid, written by "
                                "'python -m avsm.training.tensor_cache build CONFIG.toml OUT.pt' (read instead of "
                                "image_folder, csv and synthetic_folder; needs no SimpleITK) (empty: none)")


@dataclass
class TrainSettings:
    affine_epochs: int = doc(2, "curriculum 1: affine network, 1 step")
    affine_multi_epochs: int = doc(2, "curriculum 2: affine network, train_affine_steps steps, symmetric loss")
    deformable_epochs: int = doc(2, "curriculum 3: vSVF 1 step (or VoxelMorph), affine network frozen")
    deformable_multi_epochs: int = doc(2, "curriculum 4: vSVF train_vsvf_steps steps with the symmetric loss "
                                            "(AVSM only; must be 0 for voxelmorph)")
    steps_per_epoch: int = doc(100, "optimiser steps per epoch (per rank)")
    batch_size: int = doc(1, "pairs per step and rank (doubled by the symmetric pass)")
    learning_rate: float = doc(1e-4, "Adam learning rate at the start of each curriculum stage")
    lr_decay_epochs: int = doc(60, "StepLR: multiply the learning rate by lr_decay every this many epochs")
    lr_decay: float = doc(0.5, "StepLR factor")
    train_affine_steps: int = doc(3, "affine steps in curriculum 2 and inside the deformable stages")
    train_vsvf_steps: int = doc(2, "vSVF steps in curriculum 4")
    affine_refine: int = doc(0, "deformable stages: mk-LNCC Adam iterations refining the frozen affine network's "
                                "result for every training and validation pair, as avsm.register does at test time "
                                "(--affine-refine, default 30), so that the deformable network trains on the "
                                "alignment it will meet (0: off, the network's affine)")
    ncc_epochs: int = doc(1, "affine epochs that use global NCC before mk-LNCC takes over")
    lncc_window_ratios: tuple[float, ...] = doc((), "mk-LNCC window sizes as fractions of the grid's smallest dimension, "
                                                    "e.g. [0.0625, 0.125] (empty: the reference set for the grid size, "
                                                    "one window of 1/2 below 64 voxels)")
    lncc_weights: tuple[float, ...] = doc((), "mk-LNCC weight of each window (as many as lncc_window_ratios)")
    lncc_dilations: tuple[int, ...] = doc((), "mk-LNCC dilation of each window (as many as lncc_window_ratios)")
    affine_reg_c: float = doc(10.0, "C_ar of lambda_ar(n) = C K / (K + exp(n / K)) on ||A - I||^2 + ||b / extent||^2")
    affine_reg_k: float = doc(4.0, "K_ar of the affine regulariser schedule")
    affine_sym_weight: float = doc(10.0, "lambda_as of the affine symmetric loss (paper: 10)")
    vsvf_regularisation: float = doc(10.0, "lambda_vr on <m, v> (domain-normalised, as vSVF-opt)")
    vsvf_sym_weight: float = doc(500.0, "weight of mean((phi_st o phi_ts - id) / extent)^2 (authors' code: 500)")
    voxelmorph_loss: str = doc("ncc", "VoxelMorph similarity: 'ncc' (window 9) or 'mse'")
    voxelmorph_regularisation: float = doc(1.0, "diffusion weight (VoxelMorph: 1 for NCC, 0.01 for MSE)")
    dice_weight: float = doc(0.0, "weight of the soft Dice loss on training labels, in every stage (the affine map in the affine stages, the full map after); pairs without labels skip it (0: off)")
    dice_labels_per_step: int = doc(16, "labels drawn per step for the Dice loss (bounds memory)")
    checkpoint_every: int = doc(50, "write a resumable checkpoint every N steps")
    keep_checkpoints: int = doc(3, "how many recent checkpoints to keep")
    validation_pairs: int = doc(4, "validation pairs evaluated at the end of every epoch")
    validation_native: bool = doc(False, "also register the real validation pairs at their own resolution with "
                                         "avsm.register and the current weights (what users get; the working-grid "
                                         "Dice can rank models differently) and log validation/native_dice")
    max_minutes: float = doc(0.0, "wall-clock budget of a run: once spent, training stops with a checkpoint and "
                                  "writes model.pt at the step reached (0: none; --max-minutes overrides)")
    threads: int = doc(1, "torch CPU threads per rank")
    device: str = doc("auto", "'auto', 'cpu' or 'cuda'")

    def step_counts(self, stage: str) -> tuple[int, int]:
        """(affine steps, vSVF steps) of a curriculum stage, in training and in its validation: one affine step in
        'affine', no vSVF step in the affine stages, one in 'deformable', train_vsvf_steps in 'deformable_multi'."""
        affine = 1 if stage == "affine" else self.train_affine_steps
        vsvf = 0 if stage.startswith("affine") else self.train_vsvf_steps if stage == "deformable_multi" else 1
        return affine, vsvf

    def lncc_scales(self) -> Optional[tuple[LNCCScale, ...]]:
        """The mk-LNCC windows of the lncc_* fields, or None for the reference set chosen by grid size."""
        if not self.lncc_window_ratios:
            return None
        return tuple(LNCCScale(r, w, d) for r, w, d in zip(self.lncc_window_ratios, self.lncc_weights,
                                                           self.lncc_dilations))


@dataclass
class TrainConfig:
    run_dir: str = doc("runs/avsm", "output folder: checkpoints/, tensorboard/, cache/, model.pt")
    seed: int = doc(0, "seed of weights and of every pair drawn (training is a function of it)")
    init_weights: str = doc("", "checkpoint (model or training) whose network weights start a new run: fine-tuning, "
                                "e.g. at a finer working spacing or with other multi-Gaussian sigmas; its weights "
                                "must fit the [network] section (same method, widths and layers) (empty: random)")
    data: DataConfig = field(default_factory=DataConfig, metadata={"doc": "training data"})
    network: NetworkConfig = field(default_factory=NetworkConfig, metadata={"doc": "architecture"})
    train: TrainSettings = field(default_factory=TrainSettings, metadata={"doc": "curriculum and optimisation"})
    base_dir: Path = field(default=Path("."), metadata={"doc": "(set from the file) folder of the config file"})

    def path(self, value: str) -> Path:
        """A config path resolved against the configuration file's folder."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    def to_dict(self) -> dict:
        return {"run_dir": self.run_dir, "seed": self.seed, "init_weights": self.init_weights, "data": _as_dict(self.data),
                "network": self.network.to_dict(), "train": _as_dict(self.train)}


def _as_dict(section) -> dict:
    return {f.name: list(getattr(section, f.name)) if isinstance(getattr(section, f.name), tuple)
            else getattr(section, f.name) for f in fields(section)}


def _check_value(name: str, annotation: str, value: Any) -> Any:
    scalar = {"int": int, "float": float, "str": str, "bool": bool}
    if annotation in scalar:
        wanted = scalar[annotation]
        ok = (isinstance(value, bool) if wanted is bool else
              isinstance(value, (int, float)) and not isinstance(value, bool) if wanted is float else
              isinstance(value, wanted) and not isinstance(value, bool))
        if not ok:
            raise AVSMError(f"config field {name}: expected {annotation}, got {type(value).__name__} ({value!r})")
        return float(value) if wanted is float else value
    if annotation.startswith("tuple["):
        element = annotation[len("tuple["):].split(",")[0].strip()
        if not isinstance(value, list):
            raise AVSMError(f"config field {name}: expected a list of {element}, got {type(value).__name__} ({value!r})")
        return tuple(_check_value(f"{name}[{i}]", element, v) for i, v in enumerate(value))
    raise AssertionError(f"unsupported annotation {annotation} for {name}")


def build_section(cls, values: dict, prefix: str = ""):
    """Instantiate dataclass ``cls`` from a TOML table, refusing unknown and mistyped fields by name."""
    if not isinstance(values, dict):
        raise AVSMError(f"config section {prefix.rstrip('.') or 'top level'}: expected a table")
    known = {f.name: f for f in fields(cls) if f.name != "base_dir"}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise AVSMError(f"unknown config field(s): {', '.join(prefix + u for u in unknown)} "
                        f"(known in {prefix.rstrip('.') or 'the top level'}: {', '.join(known)})")
    kwargs = {}
    for name, value in values.items():
        spec = known[name]
        default = spec.default_factory() if callable(spec.default_factory) else spec.default
        if is_dataclass(default):
            kwargs[name] = build_section(type(default), value, f"{prefix}{name}.")
        else:
            kwargs[name] = _check_value(prefix + name, spec.type, value)
    return cls(**kwargs)


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a TOML configuration (every check that needs no data happens here)."""
    try:
        import tomllib  # imported here: Python 3.9 (Slicer 5.8) has none, and the module must import there
    except ModuleNotFoundError:
        raise AVSMError("reading a training configuration needs Python 3.11 or newer (tomllib)") from None
    path = Path(path)
    if not path.is_file():
        raise AVSMError(f"config file not found: {path}")
    try:
        values = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise AVSMError(f"config file {path} is not valid TOML: {error}") from None
    config = build_section(TrainConfig, values)
    config.base_dir = path.resolve().parent
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    data, train, net = config.data, config.train, config.network
    NetworkConfig.from_dict(net.to_dict())  # method name
    if not (data.image_folder or data.csv or data.synthetic_folder or data.tensor_cache):
        raise AVSMError("config: no training data (set data.image_folder, data.csv, data.synthetic_folder or "
                        "data.tensor_cache)")
    if data.image_folder and data.csv:
        raise AVSMError("config: set data.image_folder or data.csv, not both")
    if not 0.0 <= data.synthetic_fraction <= 1.0:
        raise AVSMError(f"config field data.synthetic_fraction must be in [0, 1] (got {data.synthetic_fraction})")
    if data.tensor_cache:
        if data.image_folder or data.csv or data.synthetic_folder:
            raise AVSMError("config: data.tensor_cache replaces data.image_folder, data.csv and data.synthetic_folder; "
                            "set the cache or the folders, not both")
        if train.validation_native:
            raise AVSMError("config: train.validation_native registers the validation images from their files; "
                            "with data.tensor_cache set it to false")
    else:
        if data.synthetic_fraction > 0 and not data.synthetic_folder:
            raise AVSMError("config: data.synthetic_fraction > 0 needs data.synthetic_folder")
        if not (data.image_folder or data.csv) and data.synthetic_fraction < 1.0:
            raise AVSMError("config: without real images (data.image_folder / data.csv) data.synthetic_fraction "
                            "must be 1")
    if len(data.label_name_replace) not in (0, 2):
        raise AVSMError("config field data.label_name_replace must be [old, new] or empty")
    if len(data.grid_shape) != 3 or min(data.grid_shape) < 8:
        raise AVSMError(f"config field data.grid_shape must be 3 sizes >= 8 (got {list(data.grid_shape)})")
    if data.working_spacing_mm <= 0:
        raise AVSMError("config field data.working_spacing_mm must be positive")
    for name in ("steps_per_epoch", "batch_size", "checkpoint_every", "keep_checkpoints", "threads",
                 "train_affine_steps", "train_vsvf_steps", "dice_labels_per_step"):
        if getattr(train, name) < 1:
            raise AVSMError(f"config field train.{name} must be >= 1 (got {getattr(train, name)})")
    for name in ("affine_epochs", "affine_multi_epochs", "deformable_epochs", "deformable_multi_epochs", "ncc_epochs",
                 "validation_pairs", "affine_refine"):
        if getattr(train, name) < 0:
            raise AVSMError(f"config field train.{name} must be >= 0 (got {getattr(train, name)})")
    if train.max_minutes < 0:
        raise AVSMError(f"config field train.max_minutes must be >= 0 (got {train.max_minutes})")
    if train.dice_weight < 0:
        raise AVSMError(f"config field train.dice_weight must be >= 0 (got {train.dice_weight})")
    _validate_lncc(train)
    if net.method == "voxelmorph" and train.deformable_multi_epochs:
        raise AVSMError("config field train.deformable_multi_epochs must be 0 for voxelmorph (no multi-step variant)")
    if train.voxelmorph_loss not in ("ncc", "mse"):
        raise AVSMError(f"config field train.voxelmorph_loss must be 'ncc' or 'mse' (got '{train.voxelmorph_loss}')")
    if train.device not in ("auto", "cpu", "cuda"):
        raise AVSMError(f"config field train.device must be auto, cpu or cuda (got '{train.device}')")


def _validate_lncc(train: TrainSettings) -> None:
    counts = {name: len(getattr(train, name)) for name in ("lncc_window_ratios", "lncc_weights", "lncc_dilations")}
    if len(set(counts.values())) != 1:
        raise AVSMError("config fields train.lncc_window_ratios, lncc_weights and lncc_dilations must have the same "
                        f"length, one entry per window (got {', '.join(f'{k}: {v}' for k, v in counts.items())})")
    if any(not 0.0 < r <= 1.0 for r in train.lncc_window_ratios):
        raise AVSMError(f"config field train.lncc_window_ratios must be in (0, 1] (got {list(train.lncc_window_ratios)})")
    if any(w <= 0 for w in train.lncc_weights):
        raise AVSMError(f"config field train.lncc_weights must be positive (got {list(train.lncc_weights)})")
    if any(d < 1 for d in train.lncc_dilations):
        raise AVSMError(f"config field train.lncc_dilations must be >= 1 (got {list(train.lncc_dilations)})")


def describe() -> str:
    """Every configuration field with its default and documentation (``avsm train --describe``)."""
    lines = []

    def walk(cls, prefix: str) -> None:
        for f in fields(cls):
            if f.name == "base_dir":
                continue
            default = f.default_factory() if callable(f.default_factory) else f.default
            if is_dataclass(default):
                lines.append(f"\n[{prefix}{f.name}]  {f.metadata.get('doc', '')}")
                walk(type(default), f"{prefix}{f.name}.")
            else:
                shown = list(default) if isinstance(default, tuple) else default
                lines.append(f"{f.name} = {shown!r}  # {f.type}: {f.metadata.get('doc', '')}")

    walk(TrainConfig, "")
    return "\n".join(lines)

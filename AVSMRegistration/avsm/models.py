"""Bundled and user-trained model checkpoints: lookup by name or path, checksum, safe loading.

Bundled weights live in ``AVSMRegistration/Resources/Models/`` next to ``manifest.json`` (DESIGN §5):
``{"models": [{"name", "method", "file", "sha256", "working_spacing_mm", "training_data", "accuracy"}]}``, and
optionally ``inference_spacing_mm``: the working grid the model runs on by default at test time, when it was
chosen on validation pairs to differ from the training grid ``working_spacing_mm``.
``AVSM_MODELS_DIR`` overrides the folder. Checkpoints are read with ``torch.load(weights_only=True)``
only after their sha256 matches, so a corrupted or substituted file is refused before unpickling.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import AVSMError


def models_dir() -> Path:
    return Path(os.environ.get("AVSM_MODELS_DIR", Path(__file__).resolve().parents[1] / "Resources" / "Models"))


@dataclass(frozen=True)
class ModelEntry:
    name: str
    method: str
    path: Path
    sha256: Optional[str]
    working_spacing_mm: Optional[float]
    inference_spacing_mm: Optional[float] = None  # default test-time working grid (mm); None: the training grid


def _inference_spacing(record: dict, manifest: Path) -> Optional[float]:
    """The record's optional ``inference_spacing_mm``, checked to be a positive number."""
    value = record.get("inference_spacing_mm")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise AVSMError(f"model manifest {manifest}: inference_spacing_mm of model '{record.get('name')}' must be a "
                        f"positive number of mm (got {value!r})")
    return float(value)


def bundled_models() -> list[ModelEntry]:
    manifest = models_dir() / "manifest.json"
    if not manifest.exists():
        return []
    try:
        records = json.loads(manifest.read_text())["models"]
    except (ValueError, KeyError) as error:
        raise AVSMError(f"model manifest {manifest} is malformed: {error}") from None
    return [ModelEntry(r["name"], r["method"], models_dir() / r["file"], r.get("sha256"), r.get("working_spacing_mm"),
                       _inference_spacing(r, manifest))
            for r in records]


def resolve_model(name_or_path: str, method: str) -> ModelEntry:
    """A bundled model by name, or a checkpoint file by path (its sha256 read from a ``.sha256`` sidecar if any)."""
    for entry in bundled_models():
        if entry.name == name_or_path:
            if entry.method != method:
                raise AVSMError(f"model '{entry.name}' is a {entry.method} model, not a {method} model")
            return entry
    path = Path(name_or_path)
    if path.is_file():
        return checkpoint_file(path, method)
    names = ", ".join(e.name for e in bundled_models()) or "none"
    raise AVSMError(f"unknown model '{name_or_path}': no bundled model of that name (bundled: {names}) and no such file")


def checkpoint_file(path: Path, method: str) -> ModelEntry:
    """A checkpoint given by path; its sha256 comes from a ``.sha256`` sidecar when there is one."""
    sidecar = path.with_suffix(path.suffix + ".sha256")
    sha = sidecar.read_text().split()[0] if sidecar.exists() else None
    return ModelEntry(path.stem, method, path, sha, None)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_checkpoint(entry: ModelEntry) -> dict:
    """Verify the checksum (when known) and load the checkpoint dictionary with weights_only=True."""
    import torch

    if not entry.path.is_file():
        raise AVSMError(f"model file not found: {entry.path}")
    if entry.sha256 is not None:
        actual = sha256_of(entry.path)
        if actual != entry.sha256:
            raise AVSMError(f"model file {entry.path} fails its checksum (sha256 {actual[:12]}..., expected "
                            f"{entry.sha256[:12]}...): the file is corrupted or was replaced")
    try:
        return torch.load(entry.path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise AVSMError(f"model file {entry.path} cannot be loaded ({type(error).__name__}: "
                        f"{str(error).splitlines()[0][:120] if str(error) else 'truncated?'})") from None

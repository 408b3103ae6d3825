"""Checkpoint files and the bundled-model registry: the one place that writes, verifies and loads weights.

A checkpoint is a dict saved with ``torch.save``; every checkpoint holds :data:`NETWORK_KEYS`
(``{"config": NetworkConfig dict, "state_dict", "working_spacing_mm"}``), training checkpoints hold more.
:func:`save` writes it atomically with a ``.sha256`` sidecar; :func:`load` checks the sha256 (the manifest's,
or the sidecar's) before ``torch.load(weights_only=True)``, so a corrupted or substituted file is refused
before unpickling. :func:`atomic_write` is the package's one atomic writer (a temporary file in the target's
folder, then ``os.replace``): checkpoints, the manifest, the training cache and the batch summary use it.

The bundled models are package data in ``avsm/bundled_models/`` (found with ``importlib.resources``, so a
wheel install finds them too), listed in its ``manifest.json``:
``{"models": [{"name", "method", "file", "sha256", "working_spacing_mm", "training_data",
"accuracy"}]}``, and optionally ``inference_spacing_mm``: the working grid the model runs on by default at
test time, when it was chosen on validation pairs to differ from the training grid ``working_spacing_mm``.
``AVSM_MODELS_DIR`` overrides the folder. Which method runs by default is not the manifest's to say: the
default preset and the methods live in ``avsm.methods``.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Optional, Sequence

from .errors import AVSMError

NETWORK_KEYS = ("config", "state_dict", "working_spacing_mm")


# --- files ------------------------------------------------------------------------------------------------------
def atomic_write(path: Path, write: Callable[[Path], None], check: Optional[Callable[[Path], None]] = None) -> None:
    """Write ``path`` through a temporary file beside it, then rename: readers see the old file or the new one.

    ``write(temporary)`` writes the content; ``check(temporary)`` may raise to keep the old file as it is.
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(temporary))
        if check is not None:
            check(Path(temporary))
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; written files are world-readable like any other
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_of(path: Path) -> Path:
    """The ``.sha256`` file beside a checkpoint (``sha256sum`` format: digest, two spaces, file name)."""
    return path.with_name(path.name + ".sha256")


def save(payload: dict, path: Path) -> Path:
    """Save ``payload`` atomically to ``path`` with its ``.sha256`` sidecar; returns ``path``."""
    import torch

    path = Path(path)
    atomic_write(path, lambda temporary: torch.save(payload, temporary))
    digest = sha256_of(path)
    atomic_write(sidecar_of(path), lambda temporary: temporary.write_text(f"{digest}  {path.name}\n"))
    return path


def verify(path: Path, sha256: Optional[str] = None, require_checksum: bool = False, what: str = "model file") -> str:
    """Check ``path`` against ``sha256`` (else its sidecar, when there is one) and return its actual digest.

    ``require_checksum``: refuse a file with neither (a training state to resume from must have its sidecar).
    """
    path = Path(path)
    if not path.is_file():
        raise AVSMError(f"{what} not found: {path}")
    if sha256 is None and sidecar_of(path).is_file():
        sha256 = sidecar_of(path).read_text().split()[0]
    if sha256 is None and require_checksum:
        raise AVSMError(f"{what} {path} has no checksum file {sidecar_of(path).name}; refusing to use it")
    actual = sha256_of(path)
    if sha256 is not None and actual != sha256:
        raise AVSMError(f"{what} {path} fails its checksum (sha256 {actual[:12]}..., expected {sha256[:12]}...): "
                        "the file is truncated, corrupted or was replaced")
    return actual


def load(path: Path, sha256: Optional[str] = None, keys: Sequence[str] = NETWORK_KEYS, require_checksum: bool = False,
         what: str = "model file") -> dict:
    """Verify ``path`` (:func:`verify`), load it with ``torch.load(weights_only=True)`` on the CPU and check that
    it is a dict holding ``keys``."""
    import torch

    verify(path, sha256, require_checksum, what)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise AVSMError(f"{what} {path} cannot be loaded ({type(error).__name__}: "
                        f"{str(error).splitlines()[0][:120] if str(error) else 'truncated?'})") from None
    missing = [k for k in keys if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        raise AVSMError(f"{what} {path} is not an avsm checkpoint (missing: {', '.join(missing)})")
    return checkpoint


# --- the registry -----------------------------------------------------------------------------------------------
def models_dir() -> Path:
    """The folder of the bundled models: ``AVSM_MODELS_DIR``, else the package data ``avsm/bundled_models``."""
    if os.environ.get("AVSM_MODELS_DIR"):
        return Path(os.environ["AVSM_MODELS_DIR"])
    return Path(str(resources.files(__package__) / "bundled_models"))


@dataclass(frozen=True)
class ModelEntry:
    """A model to load: a file (``path``, its expected ``sha256`` when known) or an in-memory ``checkpoint``."""

    name: str
    method: str
    path: Optional[Path]
    sha256: Optional[str]
    working_spacing_mm: Optional[float]
    inference_spacing_mm: Optional[float] = None  # default test-time working grid (mm); None: the training grid
    checkpoint: Optional[dict] = None  # in memory (NETWORK_KEYS), e.g. the weights a trainer is validating


def in_memory(name: str, checkpoint: dict) -> ModelEntry:
    """A model entry for weights held in memory (a dict with :data:`NETWORK_KEYS`): ``avsm.register(model=...)``
    runs them without a file."""
    missing = [k for k in NETWORK_KEYS if k not in checkpoint]
    if missing:
        raise AVSMError(f"in-memory model '{name}' is not an avsm checkpoint (missing: {', '.join(missing)})")
    return ModelEntry(name, checkpoint["config"]["method"], None, None, float(checkpoint["working_spacing_mm"]),
                      checkpoint=checkpoint)


def load_entry(entry: ModelEntry) -> dict:
    """The checkpoint dict of ``entry``: in memory as it is, or verified and loaded from its file."""
    if entry.checkpoint is not None:
        return entry.checkpoint
    return load(entry.path, entry.sha256)


def _inference_spacing(record: dict, manifest: Path) -> Optional[float]:
    """The record's optional ``inference_spacing_mm``, checked to be a positive number."""
    value = record.get("inference_spacing_mm")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise AVSMError(f"model manifest {manifest}: inference_spacing_mm of model '{record.get('name')}' must be a "
                        f"positive number of mm (got {value!r})")
    return float(value)


def read_manifest(directory: Path) -> dict:
    """The manifest of ``directory`` (``{"models": []}`` when there is none)."""
    path = Path(directory) / "manifest.json"
    if not path.exists():
        return {"models": []}
    try:
        manifest = json.loads(path.read_text())
        manifest["models"]
    except (ValueError, KeyError, TypeError) as error:
        raise AVSMError(f"model manifest {path} is malformed: {error}") from None
    return manifest


def bundled_models() -> list[ModelEntry]:
    directory = models_dir()
    manifest = directory / "manifest.json"
    return [ModelEntry(r["name"], r["method"], directory / r["file"], r.get("sha256"), r.get("working_spacing_mm"),
                       _inference_spacing(r, manifest))
            for r in read_manifest(directory)["models"]]


def resolve_model(model: str | ModelEntry, method: str) -> ModelEntry:
    """A bundled model by name, a checkpoint file by path (its sha256 read from a ``.sha256`` sidecar if any),
    or an entry as it is (:func:`in_memory`)."""
    if isinstance(model, ModelEntry):
        if model.method != method:
            raise AVSMError(f"model '{model.name}' is a {model.method} model, not a {method} model")
        return model
    for entry in bundled_models():
        if entry.name == model:
            if entry.method != method:
                raise AVSMError(f"model '{entry.name}' is a {entry.method} model, not a {method} model")
            return entry
    path = Path(model)
    if path.is_file():
        return checkpoint_file(path, method)
    names = ", ".join(e.name for e in bundled_models()) or "none"
    raise AVSMError(f"unknown model '{model}': no bundled model of that name (bundled: {names}) and no such file")


def checkpoint_file(path: Path, method: str) -> ModelEntry:
    """A checkpoint given by path; its sha256 comes from a ``.sha256`` sidecar when there is one."""
    sidecar = sidecar_of(path)
    sha = sidecar.read_text().split()[0] if sidecar.exists() else None
    return ModelEntry(path.stem, method, path, sha, None)

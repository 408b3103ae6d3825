"""Bundle a trained checkpoint as a shipped model: weights-only payload, sha256, manifest entry.

``python -m avsm.bundle CHECKPOINT --name NAME --training-data TEXT [--accuracy JSON] [--inference-spacing MM]
[--models-dir DIR]``
writes ``DIR/NAME.pt`` (``{"config", "state_dict", "working_spacing_mm", "version"}``: no optimiser or RNG
state, so the file stays small) and adds or replaces NAME's record in ``DIR/manifest.json`` (default DIR: the
package's ``avsm/bundled_models``). Both are written with :func:`avsm.checkpoints.atomic_write`, so an
interrupted run leaves the previous model and manifest intact.
``--inference-spacing`` records the test-time working grid chosen on validation pairs (``inference_spacing_mm``;
without it the model runs on its training grid).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

import torch

from .checkpoints import NETWORK_KEYS, atomic_write, load, models_dir, read_manifest, sha256_of
from .errors import AVSMError
from .networks import NetworkConfig

MAX_BUNDLED_BYTES = 15 * 1024 * 1024  # a bundled file stays under 15 MB: it ships inside the package
PAYLOAD_KEYS = (*NETWORK_KEYS, "version")


def bundle_model(checkpoint: Path, name: str, training_data: str, accuracy: Optional[dict] = None,
                 directory: Optional[Path] = None, notes: Optional[str] = None,
                 inference_spacing: Optional[float] = None) -> dict:
    """Write ``NAME.pt`` and its manifest record; returns the record."""
    if inference_spacing is not None and not inference_spacing > 0:
        raise AVSMError(f"inference spacing must be a positive number of mm (got {inference_spacing})")
    directory = Path(directory or models_dir())
    directory.mkdir(parents=True, exist_ok=True)
    if not name.replace("_", "").replace("-", "").isalnum():
        raise AVSMError(f"model name '{name}' must be letters, digits, '_' and '-' only")
    payload = load(Path(checkpoint))
    config = NetworkConfig.from_dict(payload["config"])
    weights = {k: payload[k] for k in PAYLOAD_KEYS if k in payload}
    target = directory / f"{name}.pt"

    def within_limit(path: Path) -> None:  # checked before the rename: an existing NAME.pt stays as it was
        size = path.stat().st_size
        if size > MAX_BUNDLED_BYTES:
            raise AVSMError(f"model file would be {size / 2**20:.1f} MiB, over the {MAX_BUNDLED_BYTES / 2**20:.0f} MiB limit")

    atomic_write(target, lambda path: torch.save(weights, path), within_limit)
    record = {"name": name, "method": config.method, "file": target.name, "sha256": sha256_of(target),
              "working_spacing_mm": float(payload["working_spacing_mm"]),
              **({"inference_spacing_mm": float(inference_spacing)} if inference_spacing is not None else {}),
              "parameters": sum(int(t.numel()) for t in payload["state_dict"].values()),
              "training_data": training_data, "accuracy": accuracy or {}}
    if notes:
        record["notes"] = notes
    manifest = read_manifest(directory)
    manifest["models"] = [m for m in manifest["models"] if m.get("name") != name] + [record]
    atomic_write(directory / "manifest.json", lambda path: path.write_text(json.dumps(manifest, indent=2) + "\n"))
    return record


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avsm.bundle", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--training-data", required=True, help="what the model was trained on (subjects, sources)")
    parser.add_argument("--accuracy", default=None, help="JSON object of measured accuracy figures")
    parser.add_argument("--notes", default=None)
    parser.add_argument("--inference-spacing", type=float, default=None,
                        help="default test-time working grid in mm, chosen on validation pairs (default: the training grid)")
    parser.add_argument("--models-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        accuracy = json.loads(args.accuracy) if args.accuracy else None
        record = bundle_model(args.checkpoint, args.name, args.training_data, accuracy, args.models_dir, args.notes,
                              args.inference_spacing)
    except (AVSMError, ValueError) as error:
        parser.exit(2, f"avsm: error: {error}\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A tensor cache: every training volume of a config, already on the training grid, in one small torch file.

``python -m avsm.training.tensor_cache build CONFIG.toml OUT.pt`` pre-processes the config's real subjects
(held-out ids skipped, as training skips them) and synthetic-source label maps exactly as the trainer does
(:mod:`avsm.training.data`) and writes them to ``OUT.pt``. A config with ``data.tensor_cache = "OUT.pt"``
then trains from that file alone: reading it needs torch and numpy, not SimpleITK, nor the image folders,
so the file can travel to a GPU machine that has neither.

Format (``torch.save`` of plain containers, read with ``weights_only=True``)::

    {"format": "avsm-tensor-cache", "version": 1, "grid_shape": [D, H, W], "working_spacing_mm": float,
     "synthetic_brain_only": bool, "held_out": [str, ...],
     "subjects": [{"name": str, "image": VOLUME, "labels": VOLUME or None}, ...],   # sorted by name
     "label_maps": [{"name": str, "labels": VOLUME}, ...]}

    VOLUME = {"dtype": "image-uint8" | "uint8" | "int16", "zlib": uint8 tensor of zlib-compressed C-order bytes}

Images in [0, 1] are stored as round(255 x value) (a step of 0.004, below the noise of the scans); label
maps as uint8 when their values fit, else int16. zlib keeps 30 subjects and 20 label maps at 2 mm under
40 MB (the label maps compress about 20-fold).
"""
from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..checkpoints import atomic_write
from ..errors import AVSMError
from .config import TrainConfig, load_config

FORMAT = "avsm-tensor-cache"
VERSION = 1


def encode_volume(volume: torch.Tensor, kind: str) -> dict:
    """``1 x 1 x D x H x W`` image in [0, 1] (``kind`` 'image') or integer label map ('labels') -> VOLUME."""
    array = volume.detach().cpu().numpy()[0, 0]
    if kind == "image":
        dtype, stored = "image-uint8", np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif array.min() >= 0 and array.max() <= 255:
        dtype, stored = "uint8", array.astype(np.uint8)
    else:
        dtype, stored = "int16", array.astype(np.int16)
    packed = zlib.compress(np.ascontiguousarray(stored).tobytes(), 6)
    return {"dtype": dtype, "zlib": torch.frombuffer(bytearray(packed), dtype=torch.uint8)}


def decode_volume(volume: dict, shape: Sequence[int], where: str) -> torch.Tensor:
    """VOLUME -> ``1 x 1 x D x H x W`` float32 image in [0, 1] or int16 label map (the trainer's dtypes)."""
    numpy_dtype = {"image-uint8": np.uint8, "uint8": np.uint8, "int16": np.int16}.get(volume.get("dtype"))
    if numpy_dtype is None or not isinstance(volume.get("zlib"), torch.Tensor):
        raise AVSMError(f"tensor cache: {where} is not a stored volume (dtype {volume.get('dtype')!r})")
    try:
        raw = zlib.decompress(volume["zlib"].numpy().tobytes())
    except zlib.error:
        raise AVSMError(f"tensor cache: {where} is corrupt (zlib data does not decompress)") from None
    array = np.frombuffer(raw, dtype=numpy_dtype)
    if array.size != int(np.prod(shape)):
        raise AVSMError(f"tensor cache: {where} holds {array.size} voxels, the grid {list(shape)} has {int(np.prod(shape))}")
    tensor = torch.from_numpy(array.reshape(shape).copy())[None, None]
    if volume["dtype"] == "image-uint8":
        return tensor.to(torch.float32) / 255.0
    return tensor.to(torch.int16)


def build(config: TrainConfig, output: Path) -> dict:
    """Pre-process the config's subjects and label maps as the trainer does and write them to ``output``
    (``data.cache_dir`` is neither read nor written)."""
    from .data import check_subjects, list_label_maps, list_subjects, preprocess_label_map, preprocess_subject

    if config.data.tensor_cache:
        raise AVSMError("tensor cache build: the config already reads a tensor cache (data.tensor_cache); give the "
                        "config that names the image folders")
    subjects = list_subjects(config)
    check_subjects(subjects)
    label_map_paths = list_label_maps(config)
    records = [preprocess_subject(subject, config) for subject in subjects]
    label_maps = [preprocess_label_map(path, config) for path in label_map_paths]
    data = config.data
    payload = {
        "format": FORMAT, "version": VERSION, "grid_shape": list(data.grid_shape),
        "working_spacing_mm": data.working_spacing_mm, "synthetic_brain_only": data.synthetic_brain_only,
        "held_out": list(data.held_out),
        "subjects": [{"name": s.name, "image": encode_volume(r["image"], "image"),
                      "labels": None if r["labels"] is None else encode_volume(r["labels"], "labels")}
                     for s, r in zip(subjects, records)],
        "label_maps": [{"name": p.name, "labels": encode_volume(r["labels"], "labels")}
                       for p, r in zip(label_map_paths, label_maps)],
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(output, lambda temporary: torch.save(payload, temporary))
    return payload


def read(config: TrainConfig) -> dict:
    """The tensor cache named by ``data.tensor_cache``, checked against the config and decoded:
    ``{"subjects": [{"name", "image", "labels"}], "label_maps": [{"name", "labels"}]}`` (sorted by name).

    Refused with one line: a missing or unreadable file, another format or version, a grid, spacing or
    brain-only setting other than the config's, a subject that the config holds out, or a config that draws
    synthetic pairs from a cache without label maps.
    """
    data = config.data
    path = config.path(data.tensor_cache)
    if not path.is_file():
        raise AVSMError(f"data.tensor_cache not found: {path} (build it with python -m avsm.training.tensor_cache "
                        "build CONFIG.toml OUT.pt)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises pickle, zip and runtime errors for a file that is not its format
        raise AVSMError(f"data.tensor_cache {path} is not a torch file ({type(error).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise AVSMError(f"data.tensor_cache {path} is not an avsm tensor cache (no format '{FORMAT}')")
    if payload.get("version") != VERSION:
        raise AVSMError(f"data.tensor_cache {path} has version {payload.get('version')}, this avsm reads {VERSION}")
    expected = {"grid_shape": list(data.grid_shape), "working_spacing_mm": data.working_spacing_mm,
                "synthetic_brain_only": data.synthetic_brain_only}
    for key, value in expected.items():
        if payload.get(key) != value:
            raise AVSMError(f"data.tensor_cache {path} was built with {key} = {payload.get(key)}, the config says "
                            f"{value}: rebuild it from this config")
    shape = tuple(data.grid_shape)
    subjects = []
    for entry in sorted(payload["subjects"], key=lambda e: e["name"]):
        held = next((h for h in data.held_out if entry["name"].startswith(h)), None)
        if held:
            raise AVSMError(f"data.tensor_cache {path} holds {entry['name']}, a held-out subject ({held}): held-out "
                            "subjects must never be used for training or validation")
        if data.subjects and not any(entry["name"].startswith(i) for i in data.subjects):
            continue
        subjects.append({"name": entry["name"], "image": decode_volume(entry["image"], shape, entry["name"]),
                         "labels": None if entry["labels"] is None else
                         decode_volume(entry["labels"], shape, f"{entry['name']} labels")})
    label_maps = [{"name": entry["name"], "labels": decode_volume(entry["labels"], shape, entry["name"])}
                  for entry in sorted(payload["label_maps"], key=lambda e: e["name"])]
    if data.synthetic_fraction > 0 and not label_maps:
        raise AVSMError(f"data.synthetic_fraction is {data.synthetic_fraction} but data.tensor_cache {path} holds no "
                        "label maps")
    if data.synthetic_fraction < 1 and len(subjects) < 2:
        raise AVSMError(f"data.tensor_cache {path}: at least 2 training subjects are needed (found {len(subjects)})")
    return {"subjects": subjects, "label_maps": label_maps}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avsm.training.tensor_cache",
                                     description="Write the training volumes of a config, on its training grid, to "
                                                 "one torch file that a config reads with data.tensor_cache.")
    commands = parser.add_subparsers(dest="command", required=True)
    build_command = commands.add_parser("build", help="pre-process CONFIG's data into OUT.pt")
    build_command.add_argument("config", help="training config that names the image folders (data.image_folder ...)")
    build_command.add_argument("output", help="the tensor cache to write (.pt)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        payload = build(load_config(args.config), Path(args.output))
    except AVSMError as error:
        print(f"avsm: error: {error}", file=sys.stderr)
        return 2
    size_mb = Path(args.output).stat().st_size / 1e6
    print(f"tensor cache {args.output}: {len(payload['subjects'])} subjects, {len(payload['label_maps'])} label maps, "
          f"grid {payload['grid_shape']} at {payload['working_spacing_mm']} mm, {size_mb:.1f} MB, "
          f"{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

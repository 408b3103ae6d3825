"""Training data: subjects from a folder or a CSV (images with optional label maps), synthetic label maps,
a one-off pre-processing cache on the working grid, and pair drawing.

Every volume is brought once onto the training grid: ``data.grid_shape`` voxels of
``data.working_spacing_mm``, identity direction, centred on the volume's centre of mass (intensity for
images, brain labels for label maps). Stored relative to that centre, all volumes share one grid whose
centre is the physical origin, so a pair starts centre-of-mass aligned (the initial affine is the
identity), as the pipeline starts every registration.

SimpleITK is imported only where files are read, so that training from a tensor cache
(:mod:`avsm.training.tensor_cache`) needs torch and numpy alone.
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch

from ..checkpoints import atomic_write
from ..errors import AVSMError
from ..geometry import Grid
from .config import TrainConfig
from .synthetic import synthesise

if TYPE_CHECKING:
    import SimpleITK as sitk

LABEL_TOLERANCE = 1e-3  # mm / direction cosine tolerance between an image and its label map
CACHE_VERSION = 1


@dataclass(frozen=True)
class Subject:
    name: str
    image: Optional[Path]  # None: read from a tensor cache (data.tensor_cache)
    labels: Optional[Path]


def training_grid(config: TrainConfig, centre=(0.0, 0.0, 0.0)) -> Grid:
    """The shared training grid (D, H, W) = ``data.grid_shape`` centred on ``centre`` (LPS mm)."""
    d, h, w = config.data.grid_shape
    spacing = config.data.working_spacing_mm
    size = np.array([w, h, d], dtype=np.float64)
    origin = np.asarray(centre, dtype=np.float64) - (size - 1) * spacing / 2.0
    return Grid((d, h, w), (spacing,) * 3, tuple(float(o) for o in origin), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))


def _held_out(name: str, held_out) -> Optional[str]:
    return next((h for h in held_out if name.startswith(h)), None)


def list_subjects(config: TrainConfig) -> list[Subject]:
    """Real subjects of the config, sorted by name, held-out ids removed (or refused, for a CSV)."""
    data = config.data
    subjects = []
    if data.image_folder:
        folder = config.path(data.image_folder)
        if not folder.is_dir():
            raise AVSMError(f"data.image_folder not found: {folder}")
        images = sorted(folder.glob(data.image_pattern))
        if not images:
            raise AVSMError(f"data folder {folder} holds no images matching '{data.image_pattern}'")
        label_folder = config.path(data.label_folder) if data.label_folder else folder
        for image in images:
            if _held_out(image.name, data.held_out):
                continue
            labels = None
            if data.label_folder or data.label_name_replace:
                name = image.name.replace(*data.label_name_replace) if data.label_name_replace else image.name
                labels = label_folder / name
                if labels == image or not labels.is_file():
                    raise AVSMError(f"label map for {image.name} not found: {labels}")
            subjects.append(Subject(image.name, image, labels))
    elif data.csv:
        table = config.path(data.csv)
        if not table.is_file():
            raise AVSMError(f"data.csv not found: {table}")
        with open(table, newline="") as handle:
            rows = list(csv.DictReader(handle))
        if not rows or "image" not in rows[0]:
            raise AVSMError(f"data.csv {table} needs a header with an 'image' column (and optionally 'labels')")
        for row in rows:
            image = (table.parent / row["image"]).resolve()
            held = _held_out(image.name, data.held_out)
            if held:
                raise AVSMError(f"data.csv {table} lists {image.name}, a held-out subject ({held}): "
                                "held-out subjects must never be used for training or validation")
            if not image.is_file():
                raise AVSMError(f"image listed in {table} not found: {image}")
            labels = (table.parent / row["labels"]).resolve() if row.get("labels") else None
            if labels is not None and not labels.is_file():
                raise AVSMError(f"label map listed in {table} not found: {labels}")
            subjects.append(Subject(image.name, image, labels))
        if not subjects:
            raise AVSMError(f"data.csv {table} lists no images")
    if data.subjects:
        subjects = [s for s in subjects if any(s.name.startswith(i) for i in data.subjects)]
    if (data.image_folder or data.csv) and len(subjects) < 2:
        raise AVSMError(f"at least 2 training subjects are needed (found {len(subjects)})")
    return sorted(subjects, key=lambda s: s.name)


def _header(path: Path) -> sitk.ImageFileReader:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise AVSMError(f"cannot read image header: {path}") from None
    return reader


def check_subjects(subjects: list[Subject]) -> None:
    """Every image readable and 3-D; every label map on exactly its image's grid (read from headers only)."""
    for subject in subjects:
        image = _header(subject.image)
        if image.GetDimension() != 3:
            raise AVSMError(f"training image {subject.image} is not 3-D")
        if subject.labels is None:
            continue
        labels = _header(subject.labels)
        same = (image.GetSize() == labels.GetSize()
                and np.allclose(image.GetSpacing(), labels.GetSpacing(), atol=LABEL_TOLERANCE)
                and np.allclose(image.GetOrigin(), labels.GetOrigin(), atol=LABEL_TOLERANCE)
                and np.allclose(image.GetDirection(), labels.GetDirection(), atol=LABEL_TOLERANCE))
        if not same:
            raise AVSMError(f"labels {subject.labels.name} do not match image {subject.image.name}: size "
                            f"{labels.GetSize()} vs {image.GetSize()}, spacing {labels.GetSpacing()} vs "
                            f"{image.GetSpacing()}, origin {labels.GetOrigin()} vs {image.GetOrigin()}")


def list_label_maps(config: TrainConfig) -> list[Path]:
    data = config.data
    if not data.synthetic_folder:
        return []
    folder = config.path(data.synthetic_folder)
    maps = sorted(folder.glob(data.synthetic_pattern)) if folder.is_dir() else []
    if not maps:
        raise AVSMError(f"data.synthetic_folder {folder} holds no label maps matching '{data.synthetic_pattern}'")
    return maps


def _cache_key(path: Path, config: TrainConfig, kind: str) -> str:
    stat = path.stat()
    text = f"{CACHE_VERSION}|{kind}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{config.data.working_spacing_mm}|" \
           f"{list(config.data.grid_shape)}|{config.data.synthetic_brain_only}"
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _resample_labels(labels: sitk.Image, grid: Grid) -> torch.Tensor:
    import SimpleITK as sitk

    resampled = sitk.Resample(labels, grid.reference_image(sitk.sitkInt16), sitk.Transform(), sitk.sitkNearestNeighbor,
                              0, sitk.sitkInt16)
    return torch.from_numpy(sitk.GetArrayFromImage(resampled).astype(np.int16))[None, None]


def preprocess_subject(subject: Subject, config: TrainConfig) -> dict:
    """Normalised image (and labels) on the training grid centred on the image's centre of mass."""
    import SimpleITK as sitk

    from ..preprocess import centre_of_mass, normalise_intensity, resample_to_grid

    image = normalise_intensity(sitk.Cast(sitk.ReadImage(str(subject.image)), sitk.sitkFloat32))
    grid = training_grid(config, centre_of_mass(image))
    record = {"image": resample_to_grid(image, grid).to(torch.float32), "labels": None}
    if subject.labels is not None:
        record["labels"] = _resample_labels(sitk.ReadImage(str(subject.labels)), grid)
    return record


def preprocess_label_map(path: Path, config: TrainConfig) -> dict:
    """A synthetic-source label map on the training grid centred on its (brain) labels' centre."""
    import SimpleITK as sitk

    from ..preprocess import centre_of_mass

    labels = sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkInt16)
    array = sitk.GetArrayFromImage(labels)
    if config.data.synthetic_brain_only:
        array[array >= 100] = 0
    kept = sitk.GetImageFromArray(array)
    kept.CopyInformation(labels)
    centre = centre_of_mass(sitk.Cast(kept > 0, sitk.sitkFloat32))
    return {"image": None, "labels": _resample_labels(kept, training_grid(config, centre))}


def load_cached(items: list, config: TrainConfig, kind: str, build: bool) -> list[dict]:
    """Pre-process each item once into ``cache_dir`` (``build``: this rank may write) and load all."""
    cache = config.path(config.data.cache_dir) if config.data.cache_dir else config.path(config.run_dir) / "cache"
    records = []
    for item in items:
        path = item.image if isinstance(item, Subject) else item
        target = cache / f"{kind}-{path.name.split('.')[0]}-{_cache_key(path, config, kind)}.pt"
        if not target.is_file():
            if not build:
                raise AVSMError(f"cache entry missing (rank 0 should have written it): {target}")
            record = preprocess_subject(item, config) if kind == "subject" else preprocess_label_map(item, config)
            cache.mkdir(parents=True, exist_ok=True)
            atomic_write(target, lambda temporary: torch.save(record, temporary))
        records.append(torch.load(target, weights_only=True))
    return records


class PairSource:
    """Draws (fixed, moving) pairs, real or synthetic, from a step's ``torch.Generator``."""

    def __init__(self, config: TrainConfig, subjects: list[dict], label_maps: list[dict]):
        self.config = config
        self.subjects = subjects
        self.label_maps = label_maps
        self.grid = training_grid(config)

    def draw(self, generator: torch.Generator) -> dict:
        """One pair: ``fixed``/``moving`` 1 x 1 x D x H x W in [0, 1], labels (int16) or None, ``synthetic``."""
        synthetic = bool(self.label_maps) and (
            not self.subjects or float(torch.rand((), generator=generator)) < self.config.data.synthetic_fraction)
        if synthetic:
            i, j = (int(k) for k in torch.randint(len(self.label_maps), (2,), generator=generator))
            fixed, fixed_labels = synthesise(self.label_maps[i]["labels"], self.grid, generator)
            moving, moving_labels = synthesise(self.label_maps[j]["labels"], self.grid, generator)
            return {"fixed": fixed, "moving": moving, "fixed_labels": fixed_labels, "moving_labels": moving_labels,
                    "synthetic": True}
        i = int(torch.randint(len(self.subjects), (), generator=generator))
        j = (i + 1 + int(torch.randint(len(self.subjects) - 1, (), generator=generator))) % len(self.subjects)
        return {"fixed": self.subjects[i]["image"], "moving": self.subjects[j]["image"],
                "fixed_labels": self.subjects[i]["labels"], "moving_labels": self.subjects[j]["labels"],
                "synthetic": False}

"""Shared helpers for the engine tests: small synthetic volumes and paths to shared data."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE_DATA = REPO / "AVSMRegistration" / "avsm" / "sample_data"

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def load_script(name: str, relative: str):
    """Import a repository script that is not part of a package (e.g. ``benchmarks/malf_accuracy.py``)."""
    spec = importlib.util.spec_from_file_location(name, REPO / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shared_path(relative: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"needs ../shared/data/{relative} (the project's shared data folder is not beside this clone)")
    return path


def oblique_direction(angle_deg: float = 20.0) -> tuple[float, ...]:
    a = np.deg2rad(angle_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(a / 2), -np.sin(a / 2)], [0, np.sin(a / 2), np.cos(a / 2)]])
    flip = np.diag([-1.0, 1.0, 1.0])  # a left-handed (LAS-like) axis order as well
    return tuple((rz @ rx @ flip).ravel())


def blob_image(size=(24, 20, 16), spacing=(1.5, 1.2, 2.0), origin=(5.0, -3.0, 10.0), direction=None,
               seed: int = 0) -> sitk.Image:
    """A smooth random 3-D image with structure at several scales (x, y, z size order)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=size[::-1]).astype(np.float32)
    image = sitk.GetImageFromArray(noise)
    image = sitk.SmoothingRecursiveGaussian(image, 2.0)
    image = sitk.RescaleIntensity(image, 0.0, 1.0)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return sitk.Cast(image, sitk.sitkFloat32)


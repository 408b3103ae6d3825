"""Shared helpers for the engine tests: small synthetic volumes and paths to shared data."""
from __future__ import annotations

import importlib.util
import sys
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
    """Import a repository script that is not part of a package (e.g. ``benchmarks/malf_accuracy.py``), registered
    in ``sys.modules`` before it runs (its dataclasses look their module up there)."""
    spec = importlib.util.spec_from_file_location(name, REPO / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def inverted_contrast_pair(angles=(0.12, -0.08, 0.1), shift=(7.0, -5.0, 4.0)):
    """The sample T1 (2 mm) and a T2-like copy of it (brain contrast inverted) moved by a known rigid transform:
    (fixed, moving, truth), the truth a ``sitk.Euler3DTransform`` mapping fixed to moving points (radians, mm)."""
    fixed = sitk.ReadImage(str(SAMPLE_DATA / "fixed_t1_2mm.nii.gz"), sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(fixed)
    brain = sitk.GetArrayFromImage(sitk.ReadImage(str(SAMPLE_DATA / "fixed_brainmask_2mm.nii.gz"))) > 0
    scaled = array / np.percentile(array[brain], 99)
    inverted = sitk.GetImageFromArray(np.where(brain, 1.3 - scaled, 0.05 * scaled).astype(np.float32))
    inverted.CopyInformation(fixed)
    centre = fixed.TransformContinuousIndexToPhysicalPoint([n / 2 for n in fixed.GetSize()])
    truth = sitk.Euler3DTransform(centre, *angles, shift)
    return fixed, sitk.Resample(inverted, fixed, truth.GetInverse(), sitk.sitkLinear, 0.0), truth


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


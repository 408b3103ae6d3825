"""Fixtures for the scene-bridge tests: real MRML scenes (slicer-core), volume nodes built from the
demo pair bundled with the engine (4 mm), and a pair with a known answer made from it. The engine
is always the real one (`avsm`, torch on the CPU)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
MODULE_DIR = HERE.parents[1] / "AVSMRegistration"
for path in (HERE, MODULE_DIR):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install slicer-core)")
sitk = pytest.importorskip("SimpleITK")

from slicer_test_support import (add_pair, close_scene, data_file, downsample, load_demo_pair,  # noqa: E402
                                 make_known_pair, make_scene)


@pytest.fixture(scope="session")
def demo_pair():
    """(fixed, moving, fixed_labels, moving_labels) SimpleITK images of the bundled demo pair at 4 mm;
    the labels are each brain mask split in 4 quadrants."""
    return load_demo_pair()


@pytest.fixture(scope="session")
def known_pair(demo_pair):
    """The demo fixed volume and a copy moved by a known rigid transform onto an oblique grid."""
    return make_known_pair(demo_pair[0], demo_pair[2])


@pytest.fixture(scope="session")
def malf_pair():
    """(fixed, moving, fixed_labels, moving_labels) of malf2012 1010 / 1011 at 3 mm, labels reduced to
    4 large structures. Needs ../shared/data (skipped with the reason when absent)."""
    images = []
    for subject in ("1010", "1011"):
        image = downsample(sitk.ReadImage(str(data_file("malf2012", f"{subject}_SS.nii.gz"))), 3.0)
        labels = sitk.ReadImage(str(data_file("malf2012", f"{subject}_glm.nii.gz")))
        array = sitk.GetArrayFromImage(labels)
        coarse = np.zeros_like(array, dtype=np.uint8)
        # cerebral white matter, lateral ventricles, cerebellum cortex, thalamus (Neuromorphometrics ids)
        for value, members in enumerate(((44, 45), (51, 52), (38, 39), (59, 60)), start=1):
            coarse[np.isin(array, members)] = value
        coarse_image = sitk.GetImageFromArray(coarse)
        coarse_image.CopyInformation(labels)
        images.append((image, downsample(coarse_image, 3.0, labels=True)))
    (fixed, fixed_labels), (moving, moving_labels) = images
    return fixed, moving, fixed_labels, moving_labels


@pytest.fixture
def scene():
    scene = make_scene()
    yield scene
    close_scene(scene)


@pytest.fixture
def nodes(scene, demo_pair):
    """Volume and label-map nodes of the demo pair ('fixed', 'moving'), moving ones in a subject folder."""
    return add_pair(scene, *demo_pair)


@pytest.fixture
def known_nodes(scene, known_pair):
    """Nodes of the known-answer pair ('fixed', 'moved'), moving ones in a subject folder."""
    pair = known_pair
    return add_pair(scene, pair.fixed, pair.moving, pair.fixed_labels, pair.moving_labels, moving_name="moved")

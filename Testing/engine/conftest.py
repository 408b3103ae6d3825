"""Fixtures for the engine tests (helpers live in engine_fixtures.py, importable by test modules)."""
import pytest
import SimpleITK as sitk

from engine_fixtures import blob_image, oblique_direction


@pytest.fixture
def oblique_image() -> sitk.Image:
    return blob_image(direction=oblique_direction())

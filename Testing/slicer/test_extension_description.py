"""The extension's descriptions agree: the Extensions Index entry (AVSMRegistration.json), the legacy
AVSMRegistration.s4ext, the top-level CMakeLists.txt, pyproject's licence and the LICENSE file."""
from __future__ import annotations

import json
import re
from pathlib import Path

from slicer_test_support import s4ext_entries

REPO = Path(__file__).resolve().parents[2]
ENTRY = json.loads((REPO / "AVSMRegistration.json").read_text())

SCHEMA_FIELDS = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                 "build_subdirectory", "enabled", "tier"}
"""Slicer/Slicer Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json: additionalProperties is false."""


def test_the_index_entry_has_the_fields_the_schema_allows_and_requires():
    assert set(ENTRY) <= SCHEMA_FIELDS
    assert {"$schema", "category", "scm_url"} <= set(ENTRY)
    assert re.fullmatch(r"https://raw\.githubusercontent\.com/Slicer/Slicer/main/Schemas/"
                        r"slicer-extension-catalog-entry-schema-v1\.0\.\d\.json#", ENTRY["$schema"])
    assert isinstance(ENTRY["enabled"], bool) and ENTRY["tier"] in (1, 3, 5)
    assert all(isinstance(name, str) for name in ENTRY["build_dependencies"])


def test_the_index_entry_and_the_s4ext_agree():
    legacy = s4ext_entries()
    assert ENTRY["category"] == legacy["category"] == "Registration"
    assert ENTRY["scm_url"] == legacy["scmurl"]
    assert ENTRY["scm_revision"] == legacy["scmrevision"]
    assert ENTRY.get("scm_type", "git") == legacy["scm"]
    assert ENTRY["build_dependencies"] == legacy["depends"].split() == ["PyTorch"]
    assert ENTRY["build_subdirectory"] == legacy["build_subdirectory"]
    assert ENTRY["enabled"] == (legacy["enabled"] == "1")


def test_the_cmake_dependencies_match():
    cmake = dict(re.findall(r'set\((EXTENSION_\w+) "([^"]*)"\)', (REPO / "CMakeLists.txt").read_text()))
    assert cmake["EXTENSION_DEPENDS"].split() == ENTRY["build_dependencies"]
    assert cmake["EXTENSION_CATEGORY"] == ENTRY["category"]


def test_the_licence_is_apache_2_everywhere():
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^license = "Apache-2.0"$', pyproject, re.MULTILINE)
    assert s4ext_entries()["license"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text

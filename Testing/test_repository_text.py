"""The repository describes the product as it is: no tracked text speaks of the work sessions that built it,
of issues by number, or of sections of documents that are not in the repository; and no product code names
the held-out evaluation subjects or the data folder beside the clone.

The patterns are assembled from pieces so that this file does not match them itself.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SESSION_WORD, ISSUE_WORD, DESIGN_WORD, SHARED_DIR = "sess" + "ion", "iss" + "ue", "DES" + "IGN", "../" + "shared"

HISTORY = [
    (re.compile(rf"\b{SESSION_WORD}s? (?:\d+|N)\b", re.IGNORECASE), "a work session by number"),
    (re.compile(rf"\b(?:this|that|same|later|earlier|different|previous|between|project's) {SESSION_WORD}s?\b",
                re.IGNORECASE), "the work sessions"),
    (re.compile(rf"\b{ISSUE_WORD}s? ?#?\d+", re.IGNORECASE), "an issue by number"),
    (re.compile(r"(?<![\w&/])#\d+\b"), "an issue by number"),
    (re.compile(rf"\bitem \d+ of (?:the )?{ISSUE_WORD}|\bengine item \d+", re.IGNORECASE), "an item of an issue"),
    (re.compile(rf"\b{DESIGN_WORD}\b"), "the design document, which is not in the repository"),
    (re.compile(r"\breference §|\breference/[\w-]+\.md|" + re.escape(SHARED_DIR + "/reference")),
     "the reference notes, which are not in the repository"),
]
PRODUCT_CODE = ("AVSMRegistration/avsm/", "AVSMRegistration/AVSMRegistrationLib/", "AVSMRegistration/AVSMRegistration.py")
RESEARCH_ONLY = [
    (re.compile(r"\b100\d\b"), "a held-out evaluation subject (malf2012 1000-1009)"),
    (re.compile(re.escape(SHARED_DIR)), "the data folder beside the clone"),
]


def _tracked_text_files() -> list[tuple[str, str]]:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    files = []
    for name in names.decode().split("\0"):
        path = REPO / name
        if not name or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue  # binary: images, weights, compressed volumes
        files.append((name, data.decode("utf-8", errors="replace")))
    return files


def _findings(files, patterns) -> list[str]:
    return [f"{name}:{number}: {why}: {line.strip()[:120]}"
            for name, text in files for number, line in enumerate(text.splitlines(), 1)
            for pattern, why in patterns if pattern.search(line)]


def test_no_tracked_text_speaks_of_sessions_issues_or_documents_outside_the_repository():
    findings = _findings(_tracked_text_files(), HISTORY)
    assert not findings, "\n".join(findings)


def test_product_code_names_no_held_out_subject_and_no_data_folder_beside_the_clone():
    code = [(name, text) for name, text in _tracked_text_files()
            if name.startswith(PRODUCT_CODE) and name.endswith(".py")]
    findings = _findings(code, RESEARCH_ONLY)
    assert not findings, "\n".join(findings)

"""The benchmarks' data rules (benchmarks/benchmark_data.py): the held-out pairs come only from malf2012
1000-1009, every tuning script refuses those subjects, and a missing data folder is a clear error."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from engine_fixtures import REPO, load_script

MALF_HELD_OUT = load_script("benchmark_data", "benchmarks/benchmark_data.py").HELD_OUT



def _run(script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_the_90_pairs_are_the_distinct_directed_pairs_of_the_held_out_subjects():
    bench = load_script("malf_accuracy", "benchmarks/malf_accuracy.py")
    pairs = bench.benchmark_pairs(90)
    assert len(set(pairs)) == 90 and all(f != m for f, m in pairs)
    assert {s for pair in pairs for s in pair} == set(MALF_HELD_OUT)
    with pytest.raises(ValueError, match="at most 90"):
        bench.benchmark_pairs(91)


def test_held_out_among_names_only_the_evaluation_subjects():
    data = load_script("benchmark_data", "benchmarks/benchmark_data.py")
    assert data.HELD_OUT == tuple(str(i) for i in range(1000, 1010))
    assert data.held_out_among(["1036", "1005", "1010", 1000]) == ["1000", "1005"]
    assert data.held_out_among(["1036", "1038"]) == []


@pytest.mark.parametrize("script, args", [
    ("benchmarks/tuning/network_steps.py", ["--subjects", "1036,1003"]),
    ("benchmarks/tuning/sweep_vsvf.py", ["configs.py", "out.csv", "--pairs", "1010:1011,1004:1012"]),
    ("benchmarks/tuning/resolution_ceiling.py", ["--subjects", "1036,1003", "--out", "out.csv"]),
])
def test_tuning_scripts_refuse_the_held_out_subjects(script, args, tmp_path):
    args = [str(tmp_path / a) if a.endswith((".py", ".csv")) else a for a in args]
    if "sweep_vsvf" in script:
        (tmp_path / "configs.py").write_text("CONFIGS = {'c': dict(working_spacing=4.0)}\n")
    result = _run(script, *args)
    assert result.returncode == 2, result.stderr
    assert "held-out evaluation set" in result.stderr and ("1003" in result.stderr or "1004" in result.stderr)
    assert not (tmp_path / "out.csv").exists()


def test_a_missing_malf2012_folder_is_named(tmp_path):
    result = _run("benchmarks/malf_accuracy.py", "--quick", "--methods", "affine", env={"MALF2012_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert f"malf2012 not found at {tmp_path}" in result.stderr


def test_elastix_writes_nothing_into_the_working_directory(tmp_path, monkeypatch):
    """transformix's deformation field went to ./deformationField.nii (62 MB per pair); it belongs in the workdir."""
    itk = pytest.importorskip("itk", reason="needs itk-elastix (pip install -e .[bench])")
    if not hasattr(itk, "ElastixRegistrationMethod"):
        pytest.skip("needs itk-elastix (pip install -e .[bench])")
    import numpy as np
    import SimpleITK as sitk

    bench = load_script("malf_accuracy_elastix", "benchmarks/malf_accuracy.py")
    zz, yy, xx = np.mgrid[:40, :40, :40]
    for name, shift in (("fixed", 0), ("moving", 3)):
        ball = ((zz - 20) ** 2 + (yy - 20 - shift) ** 2 + (xx - 20) ** 2) < 100
        image = sitk.GetImageFromArray(np.where(ball, 100.0, 10.0).astype(np.float32))
        labels = sitk.GetImageFromArray(ball.astype(np.uint8))
        for img in (image, labels):
            img.SetSpacing((2.0, 2.0, 2.0))
        sitk.WriteImage(image, str(tmp_path / f"{name}.nii.gz"))
        sitk.WriteImage(labels, str(tmp_path / f"{name}_labels.nii.gz"))
        bench.EXTRA_SUBJECTS[name] = (str(tmp_path / f"{name}.nii.gz"), str(tmp_path / f"{name}_labels.nii.gz"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    row = bench.run_elastix("fixed", "moving", None, str(tmp_path / "work"))
    assert list(cwd.iterdir()) == []
    assert (tmp_path / "work" / "elastix" / "deformation.nii.gz").exists()
    assert row["dice"] > 0.8 and row["fold_fraction"] == 0.0

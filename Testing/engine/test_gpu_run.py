"""scripts/gpu_run.sh, the one command of a GPU visit, in its CPU smoke mode (what CI can run): the CUDA tests
(skipped), the speed benchmark and a short training run from a tensor cache, all with SimpleITK blocked, leave
five files in the output folder (the run folder with its latest checkpoint as one archive); bad input is
refused in one line."""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

from engine_fixtures import REPO

SCRIPT = REPO / "scripts" / "gpu_run.sh"


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=300)


def test_cpu_smoke_run_returns_tests_speed_table_training_log_and_the_model(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    done = run_script(str(out), "--cpu-smoke", "--work", str(work))
    assert done.returncode == 0, done.stdout + done.stderr
    returned = sorted(p.name for p in out.iterdir())
    assert returned == ["cuda_tests.log", "run.tar.gz", "speed.md", "summary.md", "train.log"]
    assert "skipped" in (out / "cuda_tests.log").read_text()
    speed = (out / "speed.md").read_text()
    assert "| end to end at 4 mm (all of the above) |" in speed and "| deformable network (2 vSVF steps) |" in speed
    assert "model written to" in (out / "train.log").read_text()
    summary = (out / "summary.md").read_text()
    assert "| training (1 min budget) | 0 |" in summary and "run.tar.gz" in summary
    with tarfile.open(out / "run.tar.gz") as archive:
        names = archive.getnames()
    assert "run/model.pt" in names
    assert [n for n in names if "checkpoints/" in n] == ["run/checkpoints/step_0000008.pt",
                                                          "run/checkpoints/step_0000008.pt.sha256"]
    assert sorted(p.name for p in (work / "run" / "checkpoints").glob("*.pt")) == [
        "step_0000004.pt", "step_0000006.pt", "step_0000008.pt"]


def test_bad_input_is_refused_in_one_line(tmp_path):
    config = (REPO / "benchmarks" / "training_configs" / "brain_gpu_avsm_2mm_tensor_cache.toml").read_text()
    (tmp_path / "nocache.toml").write_text(config.replace("../../.gpu_cache/brain_2mm.pt", str(tmp_path / "none.pt")))
    for args, message in [((), "usage: scripts/gpu_run.sh OUTDIR"),
                          ((str(tmp_path / "a"), "--bogus"), "unknown option --bogus"),
                          ((str(tmp_path / "b"), "--minutes", "soon"), "--minutes must be a positive number"),
                          ((str(tmp_path / "c"), "--config", str(tmp_path / "nocache.toml")),
                           f"tensor cache {tmp_path / 'none.pt'} not found: build it with")]:
        done = run_script(*args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and message in lines[0], (args, done.stderr)

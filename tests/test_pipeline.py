"""run_pipeline.sh end to end on synthetic data: every model in the report, a kill mid-training and a
rerun that ends with the same table, one-line errors naming the failed stage."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "run_pipeline.sh"
MODELS = {"quixer", "ngram", "lstm", "transformer"}
# Stages before the trainers: copied from the finished run into the interrupted one, so the rerun
# also shows that completed stages are skipped.
EARLY_STAGES = ("data", "prepare", "encode", "quantize")
# Columns that must repeat exactly after a resume (training time does not).
RESULT_KEYS = (
    "test_cross_entropy_nats",
    "test_cross_entropy_ci95",
    "test_perplexity",
    "test_accuracy",
    "test_top5_accuracy",
    "gain_over_unigram_nats",
    "gain_over_unigram_ci95",
    "parameters",
    "epochs",
    "mean_postselection",
)


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHON=sys.executable, PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)
    return env


def _pipeline(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=_env(), capture_output=True, text=True, cwd=ROOT, **kwargs
    )


def _table(out: Path) -> dict[str, dict]:
    rows = json.loads((out / "report.json").read_text())["table"]
    return {row["model"]: row for row in rows}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("pipeline") / "run"
    proc = _pipeline("--quick", "--out", str(out), "--device", "cpu", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_usage_line_on_bad_arguments():
    for args in (["--bogus"], ["--csv", "x.csv"], ["--fasta"], ["--out"]):
        proc = _pipeline(*args, timeout=60)
        assert proc.returncode == 2, args
        assert proc.stderr.strip().splitlines()[-1].startswith("usage: run_pipeline.sh"), proc.stderr


def test_failing_stage_stops_with_its_name_and_error(tmp_path):
    fasta = tmp_path / "short.fa"
    fasta.write_text(">NM_000001.1 Homo sapiens tiny (TINY), mRNA\nACGTACGTAC\n")
    proc = _pipeline("--fasta", str(fasta), "--out", str(tmp_path / "run"), timeout=120)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("pipeline: stage prepare failed (exit 2): prepare_autoregressive_data.py: error:"), last
    assert not (tmp_path / "run" / "encode").exists()


@pytest.mark.slow
def test_quick_pipeline_reports_every_model(quick_run):
    out, proc = quick_run
    assert "THE DATA ARE SYNTHETIC" in proc.stdout
    table = _table(out)
    assert set(table) == MODELS | {"uniform", "unigram"}
    for name, row in table.items():
        for key in ("test_cross_entropy_nats", "test_cross_entropy_bits", "test_perplexity"):
            assert math.isfinite(row[key]), (name, key)
    for name in MODELS | {"unigram"}:
        low, high = table[name]["test_cross_entropy_ci95"]
        assert low <= table[name]["test_cross_entropy_nats"] <= high, name
    for name in MODELS:
        assert table[name]["gain_over_unigram_ci95"] is not None, name
    assert 0 < table["quixer"]["mean_postselection"] <= 1
    text = (out / "report.md").read_text()
    assert "**SYNTHETIC DATA.**" in text.split("## Dataset")[0]
    timings = json.loads((out / "timings.json").read_text())
    assert [s["stage"] for s in timings["stages"]] == [
        "download", "prepare", "encode", "quantize", "quixer", "ngram", "lstm", "transformer", "report"
    ]
    assert timings["settings"]["quick"] is True
    assert "Wall time per stage" in text


def _wait_for_checkpoint(proc: subprocess.Popen, folder: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (folder / "checkpoint_last.pt").is_file():
            return
        if proc.poll() is not None:
            pytest.fail(f"pipeline ended (exit {proc.returncode}) before the quixer stage saved a checkpoint")
        time.sleep(0.05)
    pytest.fail("the quixer stage saved no checkpoint in time")


@pytest.mark.slow
def test_killed_pipeline_resumes_to_the_same_table(quick_run, tmp_path):
    finished, _ = quick_run
    out = tmp_path / "run"
    for name in EARLY_STAGES:
        shutil.copytree(finished / name, out / name)
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(
        ["bash", str(SCRIPT), "--quick", "--out", str(out), "--device", "cpu"],
        env=_env(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        _wait_for_checkpoint(proc, out / "quixer", timeout=600)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    first = (tmp_path / "first.log").read_text()
    assert "stage prepare already completed" in first
    assert '"status": "completed"' not in (out / "quixer" / "args.json").read_text()

    rerun = _pipeline("--quick", "--out", str(out), "--device", "cpu", timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "stage quixer resumes from" in rerun.stdout
    resumed, reference = _table(out), _table(finished)
    assert set(resumed) == set(reference)
    for name, row in reference.items():
        for key in RESULT_KEYS:
            if row[key] is None:  # e.g. no post-selection probability for a classical model
                assert resumed[name][key] is None, (name, key)
            else:
                assert resumed[name][key] == pytest.approx(row[key], rel=1e-6, abs=1e-9), (name, key)

"""run_pipeline.sh end to end on synthetic data (--quick): a raw k-mer study with two seeds killed in the
middle of training and rerun to the end, a cluster study with tuning and data scaling (both with the capped
protocol, to stay quick), a cluster study under the converge protocol with the controls, one-line errors naming
the failed stage, a second pipeline on the same --out refused, and the raw study's outputs against a recorded
reference (what a refactoring must not change)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quixer_rna.study.__main__ import main as study_main

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "run_pipeline.sh"
REFERENCE = ROOT / "tests" / "data" / "quick_raw_reference.json"
LOSS_TOLERANCE = 2e-3  # nats: floating-point noise of a few hundred CPU steps, far below any real change
NEURAL = ("quixer", "lstm", "transformer", "fnet")
LABELS = ("Quixer", "LSTM", "Transformer", "FNet")


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHON=sys.executable, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    return env


def _pipeline(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], env=_env(), capture_output=True, text=True, cwd=ROOT, **kwargs)


def _rows(out: Path, tokenizer: str) -> dict[str, dict]:
    tracks = json.loads((out / "report.json").read_text())["tracks"]
    (track,) = [t for t in tracks if t["tokenizer"] == tokenizer]
    return {**{row["label"]: row for row in track["references"]}, **{row["label"]: row for row in track["rows"]}}


def _wait_for(proc: subprocess.Popen, path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file():
            return
        if proc.poll() is not None:
            pytest.fail(f"pipeline ended (exit {proc.returncode}) before {path} appeared")
        time.sleep(0.05)
    pytest.fail(f"{path} did not appear in time")


RAW = ("--quick", "--tracks", "raw", "--seeds", "0,1", "--device", "cpu", "--protocol", "capped")


@pytest.fixture(scope="module")
def raw_study(tmp_path_factory) -> tuple[Path, str, subprocess.CompletedProcess]:
    """The raw-track study, SIGKILLed once its first Quixer run has checkpointed, then rerun to the end."""
    out = tmp_path_factory.mktemp("pipeline") / "raw"
    log_path = out.parent / "first.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(["bash", str(SCRIPT), *RAW, "--out", str(out)], env=_env(), cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_for(proc, out / "raw" / "quixer_seed0" / "checkpoint_last.pt", timeout=600)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    rerun = _pipeline(*RAW, "--out", str(out), timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    return out, log_path.read_text(), rerun


@pytest.mark.slow
def test_killed_pipeline_finishes_when_rerun(raw_study, tmp_path):
    out, first, rerun = raw_study
    assert "THE DATA ARE SYNTHETIC" in first
    assert "stage prepare already completed" in rerun.stdout and "stage raw:quixer:seed0 -> " in rerun.stdout
    record = json.loads((out / "raw" / "quixer_seed0" / "args.json").read_text())
    assert record["status"] == "completed" and record["previous_run"] == "dead"
    # The resumed run equals the same command run without interruption.
    command = record["command"]
    fresh = tmp_path / "fresh"
    argv = [str(ROOT / command[0]), *command[1:]]
    argv[argv.index("--output_dir") + 1] = str(fresh)
    proc = subprocess.run([sys.executable, *argv], env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    resumed = json.loads((out / "raw" / "quixer_seed0" / "metrics.json").read_text())
    reference = json.loads((fresh / "metrics.json").read_text())
    assert resumed["test"] == pytest.approx(reference["test"], rel=1e-6)
    assert resumed["extra"] == pytest.approx(reference["extra"], rel=1e-6)


@pytest.mark.slow
def test_raw_study_has_seed_spreads_bits_per_nucleotide_and_the_markov_row(raw_study):
    out, _, _ = raw_study
    rows = _rows(out, "raw k-mers")
    assert set(rows) == {"uniform", "unigram", "n-gram (order 3)", "nucleotide Markov (order 4)", *LABELS}
    for name in LABELS:
        row = rows[name]
        assert row["seeds"] == [0, 1] and row["cross_entropy_sd"] is not None and row["cross_entropy_sd"] >= 0
        assert math.isfinite(row["cross_entropy"]) and row["gain"]["low"] <= row["gain"]["point"] <= row["gain"]["high"]
    for name, row in rows.items():
        assert row["bits_per_nt"] == pytest.approx(row["cross_entropy"] / (6 * math.log(2))), name
    assert rows["uniform"]["bits_per_nt"] == pytest.approx(2.0)
    assert rows["nucleotide Markov (order 4)"]["bits_per_nt"] < rows["unigram"]["bits_per_nt"]
    text = (out / "report.md").read_text()
    assert "| bits/nt |" in text and "| nucleotide Markov (order " in text and "±" in text
    assert "**SYNTHETIC DATA.**" in text.split("## Dataset")[0]
    best = next(r for r in rows.values() if r.get("rank") == "best")
    assert best["label"] == json.loads((out / "report.json").read_text())["tracks"][0]["best"]
    # the capped protocol stops every neural model at its budget, and the report says so
    assert all(rows[name]["convergence"]["hit_budget"] == 2 for name in LABELS)
    assert "hit the budget" in text
    assert {"gain_over_unigram.png", "bits_per_nucleotide.png"} <= set(json.loads((out / "report.json").read_text())["figures"])


@pytest.mark.slow
def test_cluster_study_with_tuning_and_data_scaling(tmp_path):
    out = tmp_path / "clusters"
    proc = _pipeline("--quick", "--tracks", "clusters", "--tune", "2", "--train_fractions", "0.5,1", "--device", "cpu",
                     "--protocol", "capped", "--out", str(out), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for model in NEURAL:
        trials = (out / "tune" / "clusters" / model / "trials.csv").read_text().strip().splitlines()[1:]
        assert len(trials) == 2 and all(",COMPLETE," in t or ",PRUNED," in t for t in trials), model
    report = json.loads((out / "report.json").read_text())
    assert {t["model"] for t in report["tuning"]} == set(NEURAL)
    assert all(t["budget"]["trials"] == 2 for t in report["tuning"])
    (track,) = report["tracks"]
    scaling = track["scaling"]
    assert set(scaling) >= {"n-gram", "nucleotide Markov, summed over clusters"} and len(scaling) == 6
    for label, points in scaling.items():
        assert [p["fraction"] for p in points] == [0.5, 1.0], label
        assert points[0]["train_kmers"] < points[1]["train_kmers"], label
    assert "data_scaling.png" in report["figures"]
    (cost,) = report["quantum_cost"]
    assert cost["qubits"] > 3 and 0 < cost["success_probability"] <= 1 and cost["two_qubit_gates"] > 0
    resources = json.loads(next((out / "circuit").glob("*/resources.json")).read_text())
    # --check runs for small circuits; the tuned Quixer may have grown past what is simulated as a circuit
    assert resources["check"]["status"] == ("passed" if resources["qubits"]["total"] <= 16 else "skipped")
    assert "## Quantum cost" in (out / "report.md").read_text()


@pytest.mark.slow
def test_converging_study_trains_the_controls_beside_the_models(tmp_path):
    out = tmp_path / "converge"
    proc = _pipeline("--quick", "--tracks", "clusters", "--protocol", "converge", "--device", "cpu", "--out", str(out),
                     timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(out, "clusters")
    controls = {"Quixer, frozen circuit", "bottleneck control (classical, 9 features)",
                "nucleotide Markov, summed over clusters (order 4)"}
    assert controls <= set(rows)
    for name in (*LABELS, "Quixer, frozen circuit", "bottleneck control (classical, 9 features)"):
        assert rows[name]["parameters"] > 0 and rows[name]["convergence"]["seeds"] == 1, name
        assert rows[name]["epochs_seen"] > 0, name
    frozen = json.loads((Path(rows["Quixer, frozen circuit"]["folders"][0]) / "metrics.json").read_text())
    assert frozen["model_config"]["freeze_circuit"] is True and frozen["train_config"]["max_steps_per_epoch"] == 0
    text = (out / "report.md").read_text()
    assert "What the trained circuit adds" in text and "bottleneck control" in text


def test_usage_line_on_bad_arguments(capsys):
    proc = _pipeline("--bogus", timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("usage: run_pipeline.sh"), proc.stderr
    # the rest in this process: the script hands its arguments to quixer_rna.study unchanged
    for args in (["--csv", "x.csv"], ["--fasta"], ["--out"], ["--seeds", "a"], ["--tune", "-1"],
                 ["--train_fractions", "2"], ["--tracks", "words"], ["--jobs", "0"], ["--fasta", "missing.fa"]):
        with pytest.raises(SystemExit) as stop:
            study_main(args)
        assert stop.value.code == 2, args
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 2 and lines[0].startswith("run_pipeline.sh: error: "), lines
        assert lines[1].startswith("usage: run_pipeline.sh"), lines


def test_failing_stage_stops_with_its_name_and_error(tmp_path):
    fasta = tmp_path / "short.fa"
    fasta.write_text(">NM_000001.1 Homo sapiens tiny (TINY), mRNA\nACGTACGTAC\n")
    proc = _pipeline("--fasta", str(fasta), "--out", str(tmp_path / "run"), timeout=120)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("pipeline: stage prepare failed (exit 2): prepare_autoregressive_data.py: error:"), last
    assert not (tmp_path / "run" / "encode").exists()


def test_a_second_pipeline_on_the_same_out_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(["flock", str(out / ".pipeline.lock"), "sleep", "30"])
    try:
        time.sleep(0.3)
        proc = _pipeline("--quick", "--out", str(out), timeout=60)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2
    assert "another pipeline" in proc.stderr and str(out) in proc.stderr


def _fingerprint(out: Path) -> dict:
    """What a refactoring must leave as it is: the data stages' files (checksums recorded in their metadata),
    the stage folders, and every model's test and validation loss."""
    prepare = json.loads((out / "prepare" / "metadata.json").read_text())
    models = {}
    for metrics in sorted((out / "raw").glob("*/metrics.json")):
        record = json.loads(metrics.read_text())
        models[metrics.parent.name] = {"test": record["test"]["loss"], "val": record["val"]["loss"]}
    return {"streams": {split: prepare["splits"][split]["sha256"] for split in ("train", "val", "test")},
            "windows": prepare["windows"],
            "folders": sorted(path.name for path in out.iterdir() if path.is_dir()),
            "models": models}


@pytest.mark.slow
def test_quick_study_outputs_equal_the_recorded_reference(raw_study):
    """A --quick raw study gives the streams, folders and losses recorded in tests/data (QUIXER_RNA_RECORD=1
    rewrites the reference after a change meant to alter them; say so in the commit)."""
    out, _, _ = raw_study
    found = _fingerprint(out)
    if os.environ.get("QUIXER_RNA_RECORD") == "1":
        REFERENCE.write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")
    expected = json.loads(REFERENCE.read_text())
    assert {key: found[key] for key in ("streams", "windows", "folders")} == \
        {key: expected[key] for key in ("streams", "windows", "folders")}
    assert set(found["models"]) == set(expected["models"])
    for name, losses in expected["models"].items():
        for split, loss in losses.items():
            assert found["models"][name][split] == pytest.approx(loss, abs=LOSS_TOLERANCE), (name, split)


"""The report: bootstrap by transcript, the table from fake run folders, tolerance of missing pieces."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from quixer_rna import report
from quixer_rna.errors import UserError
from quixer_rna.formats.tokens import save_token_split
from quixer_rna.metrics import reference_perplexities, unigram_log_probs

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 8


def _source_effect_data(n_sources: int, windows: int = 5, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    effects = rng.normal(0.0, 1.0, n_sources)
    values = np.concatenate([e + rng.normal(0.0, 0.3, windows) for e in effects])
    sources = [f"NM_{i}" for i in range(n_sources) for _ in range(windows)]
    return values, sources


def test_interval_contains_point_and_narrows_with_more_transcripts():
    few = report.bootstrap_mean(*_source_effect_data(10), n_boot=500, seed=1)
    many = report.bootstrap_mean(*_source_effect_data(400), n_boot=500, seed=1)
    for interval in (few, many):
        assert interval.low <= interval.point <= interval.high
    assert (many.high - many.low) < 0.5 * (few.high - few.low)


def test_windows_of_one_transcript_move_together():
    # Each transcript averages 5, so any resample of whole transcripts averages exactly 5;
    # resampling single windows would not.
    values = [0.0, 10.0, 5.0, 5.0, 2.0, 8.0]
    by_transcript = report.bootstrap_replicates(values, ["a", "a", "b", "b", "c", "c"], n_boot=300, seed=0)
    assert np.allclose(by_transcript, 5.0)
    by_window = report.bootstrap_replicates(values, ["a", "b", "c", "d", "e", "f"], n_boot=300, seed=0)
    assert by_window.std() > 0.5


def test_bootstrap_is_seeded_and_checks_lengths():
    values, sources = _source_effect_data(20)
    first = report.bootstrap_replicates(values, sources, 100, seed=3)
    assert np.array_equal(first, report.bootstrap_replicates(values, sources, 100, seed=3))
    assert not np.array_equal(first, report.bootstrap_replicates(values, sources, 100, seed=4))
    with pytest.raises(ValueError):
        report.bootstrap_replicates(values[:-1], sources, 10, seed=0)


# ------------------------------------------------------------------------------------ fake runs


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _args(stage: str, args: dict, status: str = "completed") -> dict:
    return {"stage": stage, "args": args, "command": [stage], "git_commit": "abc123", "status": status}


def _token_windows(n: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    g = torch.Generator().manual_seed(seed)
    sequences = torch.randint(0, VOCAB, (n, 4), generator=g)
    sources = [f"NM_{seed}_{i // 3}" for i in range(n)]
    return sequences, sources


def _fake_study(tmp_path: Path, synthetic: bool = True, drop_optional: bool = False) -> Path:
    runs = tmp_path / "study"
    _write_json(runs / "data" / "args.json", _args("download_rna_sequences", {"source": "synthetic" if synthetic else "ncbi"}))
    _write_json(runs / "data" / "metrics.json", {"sequences": 30, "synthetic": synthetic})
    prep = runs / "prepare"
    _write_json(prep / "args.json", _args("prepare_autoregressive_data", {"k": 6}))
    split_counts = {s: {"sequences": 10, "genes": 9, "windows": n} for s, n in (("train", 60), ("val", 12), ("test", 24))}
    _write_json(
        prep / "metadata.json",
        {"k": 6, "stride": 6, "window_size": 4, "window_step": 1, "split_by": "gene", "sequences": 30, "genes": 27,
         "windows": 96, "splits": split_counts, "synthetic": synthetic},
    )
    tokens = runs / "quantize"
    _write_json(tokens / "args.json", _args("quantize_lambeq_embeddings", {"n_clusters": VOCAB}))
    _write_json(tokens / "metadata.json", {"n_clusters": VOCAB, "token_entropy_bits": 2.9, "inertia": 1.5})
    for split, n, seed in (("train", 60, 0), ("val", 12, 1), ("test", 24, 2)):
        sequences, sources = _token_windows(n, seed)
        save_token_split(tokens / f"{split}.pt", sequences, VOCAB, sources=sources)
    test_seq, test_sources = _token_windows(24, 2)
    train_seq, _ = _token_windows(60, 0)
    refs = reference_perplexities(train_seq[:, -1], test_seq[:, -1], VOCAB)

    for name, model, quality in (("quixer", "quixer", 0.3), ("ngram", "ngram", 0.1)):
        run = runs / name
        _write_json(run / "args.json", _args(f"train_{name}", {"data_dir": str(tokens), "model": model}))
        g = torch.Generator().manual_seed(len(name))
        nll = (math.log(VOCAB) - quality + 0.2 * torch.randn(24, generator=g)).float()
        test = {"loss": float(nll.double().mean()), "perplexity": math.exp(float(nll.double().mean())),
                "accuracy": 0.2, "top5_accuracy": 0.7}
        metrics = {"model": model, "parameters": 1234, "vocab_size": VOCAB, "epochs_run": 3, "best_epoch": 2,
                   "train_seconds": 4.5, "test": test, "references": refs}
        if model == "quixer":
            metrics["mean_postselection"] = 0.12
        if drop_optional:
            for key in ("parameters", "epochs_run", "train_seconds", "mean_postselection"):
                metrics.pop(key, None)
            test.pop("accuracy")
        _write_json(run / "metrics.json", metrics)
        if not (drop_optional and name == "ngram"):
            torch.save({"nll": nll, "correct": torch.zeros(24, dtype=torch.bool),
                        "top5": torch.ones(24, dtype=torch.bool), "sources": test_sources}, run / "test_predictions.pt")
    _write_json(runs / "lstm" / "args.json", _args("train_lstm", {"data_dir": str(tokens)}, status="running"))
    return runs


def test_report_from_fake_runs_has_finite_rows_and_synthetic_banner(tmp_path):
    runs = _fake_study(tmp_path)
    result = report.make_report(runs, n_boot=200, seed=0)
    table = {row["model"]: row for row in result["table"]}
    assert set(table) == {"uniform", "unigram", "quixer", "ngram"}
    for row in table.values():
        for key in ("test_cross_entropy_nats", "test_cross_entropy_bits", "test_perplexity"):
            assert math.isfinite(row[key]), (row["model"], key)
    for name in ("unigram", "quixer", "ngram"):
        low, high = table[name]["test_cross_entropy_ci95"]
        assert low <= table[name]["test_cross_entropy_nats"] <= high
    for name in ("quixer", "ngram"):
        low, high = table[name]["gain_over_unigram_ci95"]
        assert low <= table[name]["gain_over_unigram_nats"] <= high
        expected = table["unigram"]["test_cross_entropy_nats"] - table[name]["test_cross_entropy_nats"]
        assert table[name]["gain_over_unigram_nats"] == pytest.approx(expected, abs=1e-5)
    assert table["uniform"]["test_perplexity"] == VOCAB
    assert table["quixer"]["mean_postselection"] == pytest.approx(0.12)
    # The recomputed unigram is the trainers' reference, one definition in quixer_rna/metrics.py.
    unigram_ppl = json.loads((runs / "quixer" / "metrics.json").read_text())["references"]["unigram_perplexity"]
    assert table["unigram"]["test_perplexity"] == pytest.approx(unigram_ppl, rel=1e-6)
    assert not result["problems"]
    assert any("lstm" in line and "running" in line for line in result["not_completed"])

    text = (runs / "report.md").read_text()
    assert "**SYNTHETIC DATA.**" in text.split("## Dataset")[0]
    assert "| quixer | clusters (8) |" in text
    assert "train 60 / val 12 / test 24" in text
    assert (runs / "test_perplexity.png").stat().st_size > 1000
    assert json.loads((runs / "report.json").read_text())["table"] == result["table"]


def test_real_data_has_no_banner(tmp_path):
    runs = _fake_study(tmp_path, synthetic=False)
    report.make_report(runs, n_boot=50)
    assert "SYNTHETIC" not in (runs / "report.md").read_text()


def test_missing_optional_keys_show_as_dash(tmp_path):
    runs = _fake_study(tmp_path, drop_optional=True)
    result = report.make_report(runs, n_boot=50)
    table = {row["model"]: row for row in result["table"]}
    assert table["ngram"]["test_cross_entropy_ci95"] is None
    assert table["ngram"]["parameters"] is None and table["quixer"]["test_accuracy"] is None
    assert math.isfinite(table["ngram"]["test_cross_entropy_nats"])
    line = next(line for line in (runs / "report.md").read_text().splitlines() if line.startswith("| ngram |"))
    assert "| - |" in line


def test_unigram_matches_metrics_module(tmp_path):
    runs = _fake_study(tmp_path)
    train = torch.load(runs / "quantize" / "train.pt", weights_only=True)["sequences"][:, -1]
    test = torch.load(runs / "quantize" / "test.pt", weights_only=True)["sequences"][:, -1]
    expected = float(-unigram_log_probs(train, VOCAB)[test].double().mean())
    nll, sources, _, _, vocab = report._unigram_reference(runs / "quantize")
    assert vocab == VOCAB and len(sources) == len(test)
    assert nll.mean() == pytest.approx(expected)


def test_folder_without_stages_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no stage folders"):
        report.make_report(tmp_path / "empty")
    out = subprocess.run(
        [sys.executable, str(ROOT / "make_report.py"), "--runs", str(tmp_path / "empty")],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "no stage folders" in out.stderr

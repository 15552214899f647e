"""The report: bootstrap by transcript, paired comparisons, means over seeds, the tables and figures of a study
made of real run records and results, and its tolerance of missing or foreign pieces."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures import write_token_folder
from quixer_rna import report
from quixer_rna.errors import UserError
from quixer_rna.formats.predictions import save_predictions
from quixer_rna.formats.results import write_result
from quixer_rna.formats.tokens import open_tokens
from quixer_rna.metrics import reference_perplexities, unigram_log_probs
from quixer_rna.report.stats import bootstrap_mean, bootstrap_replicates, mean_sd, paired_difference
from quixer_rna.stage import stage_run

VOCAB = 8


def _source_effect_data(n_sources: int, windows: int = 5, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    effects = rng.normal(0.0, 1.0, n_sources)
    values = np.concatenate([e + rng.normal(0.0, 0.3, windows) for e in effects])
    sources = [f"NM_{i}" for i in range(n_sources) for _ in range(windows)]
    return values, sources


def test_interval_contains_point_and_narrows_with_more_transcripts():
    few = bootstrap_mean(*_source_effect_data(10), n_boot=500, seed=1)
    many = bootstrap_mean(*_source_effect_data(400), n_boot=500, seed=1)
    for interval in (few, many):
        assert interval.low <= interval.point <= interval.high
    assert (many.high - many.low) < 0.5 * (few.high - few.low)


def test_windows_of_one_transcript_move_together():
    # Each transcript averages 5, so any resample of whole transcripts averages exactly 5;
    # resampling single windows would not.
    values = [0.0, 10.0, 5.0, 5.0, 2.0, 8.0]
    by_transcript = bootstrap_replicates(values, ["a", "a", "b", "b", "c", "c"], n_boot=300, seed=0)
    assert np.allclose(by_transcript, 5.0)
    by_window = bootstrap_replicates(values, ["a", "b", "c", "d", "e", "f"], n_boot=300, seed=0)
    assert by_window.std() > 0.5


def test_bootstrap_is_seeded_and_checks_lengths():
    values, sources = _source_effect_data(20)
    first = bootstrap_replicates(values, sources, 100, seed=3)
    assert np.array_equal(first, bootstrap_replicates(values, sources, 100, seed=3))
    assert not np.array_equal(first, bootstrap_replicates(values, sources, 100, seed=4))
    with pytest.raises(ValueError):
        bootstrap_replicates(values[:-1], sources, 10, seed=0)


def test_paired_comparison_is_antisymmetric_and_averages_seeds():
    rng = np.random.default_rng(0)
    sources = np.repeat(np.arange(30), 4)
    a = [rng.normal(2.0, 0.5, 120) for _ in range(2)]
    b = [rng.normal(2.1, 0.5, 120) for _ in range(3)]
    ab = paired_difference(a, b, sources, 400, seed=5)
    ba = paired_difference(b, a, sources, 400, seed=5)
    assert (ab.point, ab.low, ab.high) == pytest.approx((-ba.point, -ba.high, -ba.low), abs=1e-12)
    assert ab.point == pytest.approx(np.mean(a, 0).mean() - np.mean(b, 0).mean())
    same = paired_difference(a, a, sources, 100, seed=5)
    assert same.point == 0 and not same.excludes_zero
    assert mean_sd([1.0, 2.0, 3.0]) == (2.0, 1.0) and mean_sd([4.0]) == (4.0, None)


# ------------------------------------------------------------------------------------ a study of real records


def _tokens(root: Path) -> Path:
    g = torch.Generator().manual_seed(0)
    windows = {split: torch.randint(0, VOCAB, (n, 4), generator=g) for split, n in
               (("train", 60), ("val", 12), ("test", 30))}
    sources = {split: [f"{split}_tx{i // 3}" for i in range(len(w))] for split, w in windows.items()}
    return write_token_folder(root, windows, VOCAB, sources=sources)


def _model_run(folder: Path, tokens: Path, model: str, seed: int, skill: float, fraction: float = 1.0,
               extra_args: dict | None = None, status: str = "completed") -> None:
    """A model stage's folder as a trainer leaves it: run record, result, per-window predictions. `skill`
    moves probability towards the true target (0: uniform)."""
    data = open_tokens(tokens)
    test = data["test"]
    targets = test.targets(torch.arange(test.num_windows))
    rng = np.random.default_rng(seed)
    p_true = np.clip(1.0 / VOCAB + skill + rng.normal(0, 0.02, len(targets)), 1e-3, 0.99)
    nll = -np.log(p_true)
    correct = rng.random(len(targets)) < p_true
    args = {"model": model, "seed": seed, "data_dir": str(tokens), "train_fraction": fraction, **(extra_args or {})}
    with stage_run(folder, "train_classical_baselines", args, role="train") as run:
        save_predictions(folder / "test_predictions.npz", nll, correct, correct | (rng.random(len(nll)) < 0.5),
                         test.window_transcripts(), data.fingerprint)
        counts_train, counts_test = data["train"].target_counts(), test.target_counts()
        write_result(folder, {
            "model": model, "seed": seed,
            "tokens": {"folder": str(tokens), "tokenizer": data.tokenizer, "vocab_size": VOCAB, "k": data.k,
                       "fingerprint": data.fingerprint},
            "test": {"loss": float(nll.mean()), "perplexity": math.exp(nll.mean()), "accuracy": float(correct.mean()),
                     "top5_accuracy": 0.5},
            "val": {"loss": float(nll.mean())},
            "references": reference_perplexities(counts_train, counts_test), "parameters": 100, "train_seconds": 1.5,
            "train": {"fraction": fraction, "windows": int(60 * fraction), "kmers": int(240 * fraction)},
            "model_config": {"size": 1}, "extra": {"mean_postselection": 0.3} if model == "quixer" else {},
        })
        if status == "completed":
            run.close("completed")
        else:
            run.close(status, "stopped")


@pytest.fixture
def study(tmp_path) -> Path:
    runs = tmp_path / "study"
    tokens = _tokens(runs / "data")
    with stage_run(runs / "data" / "rna.fasta", "download_rna_sequences", {"source": "synthetic"}, role="download",
                   single_file=True) as run:
        (runs / "data" / "rna.fasta").write_text(">x SYNTHETIC\nACGT\n")
        run.finish({"synthetic": True})
    for seed in (0, 1):
        _model_run(runs / f"quixer_seed{seed}", tokens, "quixer", seed, 0.05)
        _model_run(runs / f"lstm_seed{seed}", tokens, "lstm", seed, 0.10)
    _model_run(runs / "ngram", tokens, "ngram", 0, 0.02)
    for fraction in (0.25, 0.5):
        _model_run(runs / f"lstm_f{fraction}", tokens, "lstm", 0, 0.1 * fraction, fraction=fraction)
    _model_run(runs / "broken", tokens, "fnet", 0, 0.0, status="failed")
    return runs


def test_report_has_means_over_seeds_comparisons_scaling_and_the_synthetic_banner(study):
    result = report.make_report(study, n_boot=200, seed=0)
    md = (study / "report.md").read_text()
    assert "SYNTHETIC DATA" in md and result["synthetic"] is True
    (track,) = result["tracks"]
    rows = {row["model"]: row for row in track["rows"]}
    assert set(rows) == {"uniform", "unigram", "quixer", "lstm", "ngram"}
    lstm, quixer = rows["lstm"], rows["quixer"]
    assert lstm["seeds"] == [0, 1] and quixer["seeds"] == [0, 1]
    per_seed = [json.loads((study / f"lstm_seed{s}" / "metrics.json").read_text())["test"]["loss"] for s in (0, 1)]
    assert lstm["cross_entropy"] == pytest.approx(np.mean(per_seed))
    assert lstm["cross_entropy_sd"] == pytest.approx(np.std(per_seed, ddof=1))
    assert f"{np.mean(per_seed):.4f} ± {np.std(per_seed, ddof=1):.4f}" in md
    assert track["best"] == "lstm" and lstm["rank"] == "best" and lstm["versus_best"] is None
    assert quixer["versus_best"]["point"] > 0 and quixer["rank"] == "worse than the best"
    assert quixer["postselection"] == pytest.approx(0.3)
    for row in (lstm, quixer, rows["ngram"]):
        assert row["gain"]["low"] <= row["gain"]["point"] <= row["gain"]["high"]
        assert math.isfinite(row["cross_entropy"])
    # the data-scaling series: one point per training fraction of the variant trained at several
    assert [p["fraction"] for p in track["scaling"]["lstm"]] == [0.25, 0.5, 1.0]
    assert [p["train_kmers"] for p in track["scaling"]["lstm"]] == [60, 120, 240]
    assert {"gain_over_unigram.png", "data_scaling.png"} <= set(result["figures"])
    assert all((study / name).stat().st_size > 1000 for name in result["figures"])
    assert any("broken" in p and "failed" in p for p in result["problems"])


def test_a_single_seed_among_seeded_models_is_compared_but_not_ranked(study):
    tokens = study / "data" / "tokens"
    _model_run(study / "quixer_l0.1", tokens, "quixer", 0, 0.30, extra_args={"postselection_weight": 0.1})
    result = report.make_report(study, n_boot=100, seed=0)
    (track,) = result["tracks"]
    rows = {row["model"]: row for row in track["rows"]}
    lucky = rows["quixer (postselection_weight=0.1)"]
    assert lucky["cross_entropy"] < rows["lstm"]["cross_entropy"]  # lowest loss, but one seed
    assert track["best"] == "lstm" and lucky["rank"] == "one seed: not ranked"
    assert lucky["versus_best"]["point"] < 0
    assert rows["ngram"]["rank"] == "worse than the best"  # a count model has no seed to repeat
    md = (study / "report.md").read_text()
    assert "| model | 0.25 (60 k-mers) | 0.5 (120 k-mers) | 1 (240 k-mers) |" in md  # the scaling figure's numbers


def test_unigram_matches_the_trainers_definition(study):
    result = report.make_report(study, n_boot=50, seed=0)
    unigram = next(r for r in result["tracks"][0]["rows"] if r["model"] == "unigram")
    data = open_tokens(study / "data" / "tokens")
    refs = reference_perplexities(data["train"].target_counts(), data["test"].target_counts())
    assert unigram["perplexity"] == pytest.approx(refs["unigram_perplexity"])
    targets = data["test"].targets(torch.arange(data["test"].num_windows))
    expected = float(-unigram_log_probs(data["train"].target_counts())[targets].mean())
    assert unigram["cross_entropy"] == pytest.approx(expected)


def test_variants_of_one_model_are_told_apart(tmp_path):
    runs = tmp_path / "study"
    tokens = _tokens(runs / "data")
    _model_run(runs / "a", tokens, "quixer", 0, 0.05, extra_args={"postselection_weight": 0.0})
    _model_run(runs / "b", tokens, "quixer", 0, 0.04, extra_args={"postselection_weight": 0.1})
    _model_run(runs / "c", tokens, "quixer", 0, 0.06, extra_args={"config": "best_params.json", "qubits": 3})
    labels = {row["model"] for row in report.make_report(runs, n_boot=20)["tracks"][0]["rows"]}
    assert {"quixer (postselection_weight=0.0)", "quixer (postselection_weight=0.1)", "quixer (tuned)"} <= labels


def test_real_data_has_no_banner_and_foreign_records_are_problems(tmp_path):
    runs = tmp_path / "study"
    tokens = _tokens(runs / "data")
    _model_run(runs / "lstm", tokens, "lstm", 0, 0.1)
    (runs / "old").mkdir()
    (runs / "old" / "args.json").write_text(json.dumps({"stage": "train_quixer_hybrid", "status": "completed"}))
    result = report.make_report(runs, n_boot=20)
    assert result["synthetic"] is False and "SYNTHETIC" not in (runs / "report.md").read_text()
    assert any("old/args.json: not a run record of this version" in p for p in result["problems"])


def test_a_result_of_another_schema_is_left_out_with_its_reason(tmp_path):
    runs = tmp_path / "study"
    tokens = _tokens(runs / "data")
    _model_run(runs / "lstm", tokens, "lstm", 0, 0.1)
    metrics = json.loads((runs / "lstm" / "metrics.json").read_text())
    del metrics["train"]
    (runs / "lstm" / "metrics.json").write_text(json.dumps(metrics))
    result = report.make_report(runs, n_boot=20)
    assert result["tracks"] == [] and any("result lacks train" in p for p in result["problems"])


def test_folder_without_stages_is_a_one_line_error(tmp_path):
    with pytest.raises(UserError, match="no run records"):
        report.make_report(tmp_path)
    with pytest.raises(UserError, match="folder not found"):
        report.make_report(tmp_path / "absent")

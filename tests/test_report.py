"""The report on a study of real run records and results (formats.results.write_result, save_predictions):
means over seeds, gene-bootstrap intervals, the best model chosen on validation, convergence, the controls'
labels, data scaling, and its tolerance of missing or foreign pieces."""

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
from quixer_rna.formats.results import ModelResult, write_result
from quixer_rna.formats.tokens import open_tokens
from quixer_rna.metrics import reference_perplexities, unigram_log_probs
from quixer_rna.report.build import build_report
from quixer_rna.stage import stage_run

VOCAB = 8
TEST_WINDOWS = 60  # 20 transcripts of 3 windows, 10 genes of 2 transcripts


def _tokens(root: Path, test_sources: list[str] | None = None, test_genes: list[str] | None = None) -> Path:
    g = torch.Generator().manual_seed(0)
    windows = {split: torch.randint(0, VOCAB, (n, 4), generator=g) for split, n in
               (("train", 60), ("val", 12), ("test", TEST_WINDOWS))}
    sources = {split: [f"{split}_tx{i // 3}" for i in range(len(w))] for split, w in windows.items()}
    genes = {split: [f"{split}_gene{i // 6}" for i in range(len(w))] for split, w in windows.items()}
    if test_sources is not None:
        sources["test"], genes["test"] = test_sources, test_genes
    return write_token_folder(root, windows, VOCAB, sources=sources, genes=genes)


def _model_run(folder: Path, tokens: Path, model: str, seed: int, skill: float, fraction: float = 1.0,
               extra_args: dict | None = None, status: str = "completed", val_loss: float | None = None,
               converged: bool = True, model_config: dict | None = None, noise_seed: int | None = None,
               on_plateau: bool = False) -> None:
    """A model stage's folder as a trainer leaves it: run record, result, per-window predictions. `skill`
    moves probability towards the true target (0: uniform)."""
    data = open_tokens(tokens)
    test = data["test"]
    targets = test.targets(torch.arange(test.num_windows))
    rng = np.random.default_rng(seed if noise_seed is None else noise_seed)
    p_true = np.clip(1.0 / VOCAB + skill + rng.normal(0, 0.02, len(targets)), 1e-3, 0.99)
    nll = -np.log(p_true)
    correct = rng.random(len(targets)) < p_true
    args = {"model": model, "seed": seed, "data_dir": str(tokens), "train_fraction": fraction, **(extra_args or {})}
    counts = model in ("ngram", "markov")
    with stage_run(folder, "train_classical_baselines", args, role="train") as run:
        save_predictions(folder / "test_predictions.npz", nll, correct, correct | (rng.random(len(nll)) < 0.5),
                         test.window_transcripts(), data.fingerprint)
        result = {
            "model": model, "seed": seed,
            "tokens": {"folder": str(tokens), "tokenizer": data.tokenizer, "vocab_size": VOCAB, "k": data.k,
                       "fingerprint": data.fingerprint},
            "test": {"loss": float(nll.mean()), "perplexity": math.exp(nll.mean()), "accuracy": float(correct.mean()),
                     "top5_accuracy": 0.5},
            "val": {"loss": float(nll.mean()) if val_loss is None else val_loss},
            "references": reference_perplexities(data["train"].target_counts(), test.target_counts()),
            "parameters": 100, "train_seconds": 1.5,
            "train": {"fraction": fraction, "windows": int(60 * fraction), "kmers": int(240 * fraction)},
            "model_config": model_config or ({"order": 3} if counts else {"size": 1, "freeze_circuit": False}),
            "extra": {"mean_postselection": 0.3} if model == "quixer" else {},
        }
        if not counts:
            result.update(converged=converged, stopped_by="patience" if converged else "budget",
                          epochs_seen=2.0 * fraction)
        if on_plateau:  # its best val loss never went 0.01 below the unigram's
            result["val"]["unigram_loss"] = result["val"]["loss"] - 0.005
            result["train_config"] = {"plateau_margin": 0.01}
        write_result(folder, ModelResult.from_json({"windows": {}, "device": "cpu", **result}, "the test's result"))
        run.close(status) if status == "completed" else run.close(status, "stopped")


def _rows(result: dict, track: int = 0) -> dict[str, dict]:
    return {row["label"]: row for row in result["tracks"][track]["rows"]}


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
        _model_run(runs / f"lstm_f{fraction}", tokens, "lstm", 0, 0.1 * fraction, fraction=fraction,
                   converged=fraction != 0.25)
    _model_run(runs / "broken", tokens, "fnet", 0, 0.0, status="failed")
    return runs


def test_report_has_means_over_seeds_gene_intervals_comparisons_and_scaling(study):
    result = report.make_report(study, n_boot=200, seed=0, margin=0.02)
    md = (study / "report.md").read_text()
    assert "SYNTHETIC DATA" in md and result["synthetic"] is True
    (track,) = result["tracks"]
    assert [r["label"] for r in track["references"]] == ["uniform", "unigram"]
    rows = _rows(result)
    assert set(rows) == {"Quixer", "LSTM", "n-gram (order 3)"}
    lstm, quixer = rows["LSTM"], rows["Quixer"]
    assert lstm["seeds"] == [0, 1] and quixer["seeds"] == [0, 1] and lstm["parameters"] == 100
    per_seed = [json.loads((study / f"lstm_seed{s}" / "metrics.json").read_text())["test"]["loss"] for s in (0, 1)]
    assert lstm["cross_entropy"] == pytest.approx(np.mean(per_seed))
    assert lstm["cross_entropy_sd"] == pytest.approx(np.std(per_seed, ddof=1))
    assert f"| LSTM | 100 | {np.mean(per_seed):.4f} ± {np.std(per_seed, ddof=1):.4f} |" in md  # the main table
    assert track["best"] == "LSTM" and lstm["rank"] == "best" and lstm["versus_best"] is None
    assert quixer["versus_best"]["difference"]["point"] > 0 and quixer["rank"] == "worse"
    assert quixer["postselection"] == pytest.approx(0.3) and quixer["convergence"] == {"seeds": 2, "hit_budget": 0,
                                                                                  "on_plateau": 0}
    for row in (lstm, quixer, rows["n-gram (order 3)"]):
        assert row["interval"]["low"] <= row["cross_entropy"] <= row["interval"]["high"]
        assert row["gain"]["low"] <= row["gain"]["point"] <= row["gain"]["high"]
    assert track["test_genes"] == 10 and result["bootstrap"]["unit"] == "gene"
    assert result["bootstrap"]["margin"] == 0.02 and "±0.0200 nats" in md
    # the data-scaling series: one point per training fraction, each with its interval, epochs seen and convergence
    points = track["scaling"]["LSTM"]
    assert [p["fraction"] for p in points] == [0.25, 0.5, 1.0] and [p["train_kmers"] for p in points] == [60, 120, 240]
    assert [p["epochs_seen"] for p in points] == [0.5, 1.0, 2.0]
    assert [p["convergence"]["hit_budget"] for p in points] == [1, 0, 0]
    assert all(p["interval"]["low"] < p["interval"]["high"] for p in points)
    assert "| LSTM | 100 | 0.250 | 60 | 1 |" in md and "| 0.50 | no: 1 of 1 seed hit the budget |" in md
    assert {"gain_over_unigram.png", "data_scaling.png"} <= set(result["figures"])
    assert all((study / name).stat().st_size > 1000 for name in result["figures"])
    assert any("broken" in p and "failed" in p for p in result["problems"])
    assert "## At a glance" in md and "best on validation *LSTM*" in md
    assert "  - worse than it: *Quixer*" in md


def test_a_single_seed_among_seeded_models_is_compared_but_not_ranked(study):
    tokens = study / "data" / "tokens"
    _model_run(study / "quixer_l0.1", tokens, "quixer", 0, 0.30, extra_args={"postselection_weight": 0.1})
    rows = _rows(report.make_report(study, n_boot=100, seed=0))
    lucky = rows["Quixer (postselection_weight=0.1)"]
    assert lucky["cross_entropy"] < rows["LSTM"]["cross_entropy"] and lucky["val_loss"] < rows["LSTM"]["val_loss"]
    assert rows["LSTM"]["rank"] == "best" and lucky["rank"] == "one seed: not ranked"
    assert lucky["versus_best"]["difference"]["point"] < 0
    assert rows["n-gram (order 3)"]["rank"] == "worse"  # a count model has no seed to repeat


def test_the_best_is_chosen_on_validation_not_on_test(tmp_path):
    runs = tmp_path / "study"
    tokens = _tokens(runs / "data")
    for seed in (0, 1):  # lower validation loss, higher test loss
        _model_run(runs / f"quixer_seed{seed}", tokens, "quixer", seed, 0.05, val_loss=1.0)
        _model_run(runs / f"lstm_seed{seed}", tokens, "lstm", seed, 0.15, val_loss=1.2)
    result = report.make_report(runs, n_boot=200)
    rows = _rows(result)
    assert rows["LSTM"]["cross_entropy"] < rows["Quixer"]["cross_entropy"]
    assert result["tracks"][0]["best"] == "Quixer" and rows["Quixer"]["rank"] == "best"
    assert rows["LSTM"]["rank"] == "better"  # better than the chosen model on test: shown, not hidden


def test_a_model_that_hit_its_budget_is_marked(tmp_path):
    runs = tmp_path / "study"
    tokens = _tokens(runs / "data")
    _model_run(runs / "lstm_seed0", tokens, "lstm", 0, 0.1)
    _model_run(runs / "lstm_seed1", tokens, "lstm", 1, 0.1, converged=False)
    _model_run(runs / "lstm_seed2", tokens, "lstm", 2, 0.1, converged=False, on_plateau=True)
    _model_run(runs / "ngram", tokens, "ngram", 0, 0.02)
    result = report.make_report(runs, n_boot=50)
    md = (runs / "report.md").read_text()
    rows = _rows(result)
    assert rows["LSTM"]["convergence"] == {"seeds": 3, "hit_budget": 2, "on_plateau": 1}
    assert rows["LSTM"]["stopped_by"] == {"budget": 2, "patience": 1}
    assert "| no: 2 of 3 seeds hit the budget (1 on the unigram plateau throughout) |" in md and "  - hit the training budget before converging: *LSTM*" in md
    assert rows["n-gram (order 3)"]["convergence"]["hit_budget"] is None
    assert "count models (n-gram, Markov) have no training to converge" in md


def test_runs_under_another_stopping_rule_are_one_variant_and_a_repeated_seed_is_left_out(tmp_path):
    runs = tmp_path / "study"
    tokens = _tokens(runs / "data")
    # seed 0 recorded before --patience_epochs existed; seed 1 and a half-data run with it
    _model_run(runs / "lstm_seed0", tokens, "lstm", 0, 0.1, extra_args={"patience": 3})
    _model_run(runs / "lstm_seed1", tokens, "lstm", 1, 0.1, extra_args={"patience": 3, "patience_epochs": 1.0})
    _model_run(runs / "lstm_f0.5", tokens, "lstm", 0, 0.05, fraction=0.5,
               extra_args={"patience": 3, "patience_epochs": 1.0})
    _model_run(runs / "lstm_seed0_again", tokens, "lstm", 0, 0.2, extra_args={"patience": 9})
    result = report.make_report(runs, n_boot=50)
    (track,) = result["tracks"]
    assert set(_rows(result)) == {"LSTM"} and _rows(result)["LSTM"]["seeds"] == [0, 1]
    assert [p["fraction"] for p in track["scaling"]["LSTM"]] == [0.5, 1.0]  # one series over both rules
    assert any("lstm_seed0_again" in p and "a second run of seed 0" in p for p in result["problems"])


def test_controls_and_variants_are_labelled_by_what_they_are(tmp_path):
    runs = tmp_path / "study"
    tokens = _tokens(runs / "data")
    _model_run(runs / "a", tokens, "quixer", 0, 0.05, extra_args={"postselection_weight": 0.0})
    _model_run(runs / "b", tokens, "quixer", 0, 0.04, extra_args={"postselection_weight": 0.1})
    _model_run(runs / "c", tokens, "quixer", 0, 0.06, extra_args={"config": "best_params.json", "qubits": 3})
    _model_run(runs / "frozen", tokens, "quixer", 0, 0.03, extra_args={"freeze_circuit": True},
               model_config={"size": 1, "freeze_circuit": True})
    _model_run(runs / "bottleneck", tokens, "bottleneck", 0, 0.05, model_config={"features": 9, "embedding_dim": 16})
    _model_run(runs / "markov", tokens, "markov", 0, 0.05,
               model_config={"order": 5, "tokens": "k-mer probabilities summed per token"})
    result = report.make_report(runs, n_boot=100)
    labels = set(_rows(result))
    assert {"Quixer (postselection_weight=0.0)", "Quixer (postselection_weight=0.1)", "Quixer (tuned)",
            "Quixer, frozen circuit", "bottleneck control (classical, 9 features)",
            "nucleotide Markov, summed over clusters (order 5)"} == labels
    md = (runs / "report.md").read_text()
    assert "| Quixer, frozen circuit | 100 |" in md and "| bottleneck control (classical, 9 features) | 100 |" in md
    # what the circuit adds: each untuned Quixer against each untuned control, paired
    checks = {(c["quixer"], c["control"]): c["comparison"] for c in result["tracks"][0]["circuit"]}
    assert set(checks) == {(q, c) for q in ("Quixer (postselection_weight=0.0)", "Quixer (postselection_weight=0.1)")
                           for c in ("Quixer, frozen circuit", "bottleneck control (classical, 9 features)")}
    frozen = checks[("Quixer (postselection_weight=0.0)", "Quixer, frozen circuit")]
    assert frozen["difference"]["point"] < 0 and frozen["verdict"] == "better"  # skill 0.05 against 0.03


def test_a_switch_left_off_or_unset_is_the_runs_before_the_switch_existed(tmp_path):
    """Runs recorded before --normalise_features (no such argument), with it unset (None: the model's default)
    or off join one variant; the runs with it on are a variant named by it, the others keep their name."""
    runs = tmp_path / "study"
    tokens = _tokens(runs / "data")
    config = {"features": 9, "embedding_dim": 16}
    _model_run(runs / "b0", tokens, "bottleneck", 0, 0.05, model_config=config)
    _model_run(runs / "b1", tokens, "bottleneck", 1, 0.05, model_config=config, extra_args={"normalise_features": None})
    _model_run(runs / "q0", tokens, "quixer", 0, 0.05)
    _model_run(runs / "q1", tokens, "quixer", 1, 0.05, extra_args={"normalise_features": False})
    for seed in (0, 1):
        _model_run(runs / f"bn{seed}", tokens, "bottleneck", seed, 0.06, model_config=config,
                   extra_args={"normalise_features": True})
    rows = _rows(report.make_report(runs, n_boot=50))
    assert set(rows) == {"bottleneck control (classical, 9 features)", "Quixer",
                         "bottleneck control (classical, 9 features) (normalise_features=True)"}
    assert all(row["seeds"] == [0, 1] for row in rows.values())


def test_two_transcripts_of_one_gene_resample_together(tmp_path):
    """The same windows and losses, the test genes' windows split over two transcripts or held by one: the
    same intervals. Made genes of their own, the transcripts give another interval."""
    pairs = [f"tx{i // 3}" for i in range(TEST_WINDOWS)]
    merged = [f"tx{i // 6}" for i in range(TEST_WINDOWS)]
    genes = [f"gene{i // 6}" for i in range(TEST_WINDOWS)]
    intervals = []
    for name, sources, units in (("pairs", pairs, genes), ("merged", merged, genes), ("alone", pairs, pairs)):
        runs = tmp_path / name
        tokens = _tokens(runs / "data", sources, units)
        for seed in (0, 1):
            _model_run(runs / f"lstm_seed{seed}", tokens, "lstm", seed, 0.1)
        (row,) = build_report(runs, 300, 0, 0.01).tracks[0].rows
        intervals.append(row.interval)
    pairs_ci, merged_ci, alone_ci = intervals
    assert pairs_ci == merged_ci
    assert alone_ci != pairs_ci


def test_unigram_matches_the_trainers_definition(study):
    result = report.make_report(study, n_boot=50, seed=0)
    unigram = result["tracks"][0]["references"][1]
    data = open_tokens(study / "data" / "tokens")
    refs = reference_perplexities(data["train"].target_counts(), data["test"].target_counts())
    assert unigram["perplexity"] == pytest.approx(refs["unigram_perplexity"])
    targets = data["test"].targets(torch.arange(data["test"].num_windows))
    expected = float(-unigram_log_probs(data["train"].target_counts())[targets].mean())
    assert unigram["cross_entropy"] == pytest.approx(expected)


def test_real_data_has_no_banner_and_foreign_records_are_problems(tmp_path):
    runs = tmp_path / "study"
    tokens = _tokens(runs / "data")
    _model_run(runs / "lstm", tokens, "lstm", 0, 0.1)
    (runs / "old").mkdir()
    (runs / "old" / "args.json").write_text(json.dumps({"stage": "train_quixer_hybrid", "status": "completed"}))
    result = report.make_report(runs, n_boot=20)
    assert result["synthetic"] is False and "SYNTHETIC" not in (runs / "report.md").read_text()
    assert any("old/args.json: not a run record of this version" in p for p in result["problems"])


def test_results_of_another_schema_are_left_out_with_their_reason(tmp_path):
    runs = tmp_path / "study"
    tokens = _tokens(runs / "data")
    _model_run(runs / "lstm", tokens, "lstm", 0, 0.1)
    _model_run(runs / "fnet", tokens, "fnet", 0, 0.1)
    _model_run(runs / "bottleneck", tokens, "bottleneck", 0, 0.1, model_config={"embedding_dim": 16})
    for name, key in (("lstm", "train"), ("fnet", "converged")):
        metrics = json.loads((runs / name / "metrics.json").read_text())
        del metrics[key]
        (runs / name / "metrics.json").write_text(json.dumps(metrics))
    result = report.make_report(runs, n_boot=20)
    assert result["tracks"] == []
    problems = "\n".join(result["problems"])
    assert "lstm/metrics.json: no 'train'" in problems and "a neural result without converged" in problems
    assert "model_config has no 'features'" in problems


def test_folder_without_stages_is_a_one_line_error(tmp_path):
    with pytest.raises(UserError, match="no run records"):
        report.make_report(tmp_path)
    with pytest.raises(UserError, match="folder not found"):
        report.make_report(tmp_path / "absent")


def test_the_order_runs_were_made_in_does_not_move_the_intervals(study):
    first = report.make_report(study, n_boot=200, seed=0)
    for folder in ("lstm_seed0", "quixer_seed0"):  # rerun later: their records now come after seed 1's
        record_path = study / folder / "args.json"
        record = json.loads(record_path.read_text())
        record["started"] = "2999-01-01T00:00:00+00:00"
        record_path.write_text(json.dumps(record))
    again = report.make_report(study, n_boot=200, seed=0)
    for label in ("LSTM", "Quixer"):
        before, after = _rows(first)[label], _rows(again)[label]
        assert after["seeds"] == [0, 1] and after["interval"] == before["interval"], label
        assert after["gain"] == before["gain"], label


def test_a_study_grown_over_several_commits_names_each(tmp_path):
    runs = tmp_path / "study"
    tokens = _tokens(runs / "data")
    for seed, commit in ((0, "a" * 40), (1, "b" * 40), (2, "b" * 40)):
        _model_run(runs / f"lstm_seed{seed}", tokens, "lstm", seed, 0.1)
        record = runs / f"lstm_seed{seed}" / "args.json"
        record.write_text(json.dumps({**json.loads(record.read_text()), "git_commit": commit}))
    result = report.make_report(runs, n_boot=20)
    assert result["commits"] == [{"commit": "a" * 40, "records": 1}, {"commit": "b" * 40, "records": 2}]
    assert "run records from 2 code commits (records per commit): `aaaaaaaaaaaa` (1), `bbbbbbbbbbbb` (2)" in (
        runs / "report.md").read_text()
    for seed in (1, 2):
        record = runs / f"lstm_seed{seed}" / "args.json"
        record.write_text(json.dumps({**json.loads(record.read_text()), "git_commit": "a" * 40}))
    report.make_report(runs, n_boot=20)
    assert f"code commit `{'a' * 40}`." in (runs / "report.md").read_text()

"""The report's strict readers of other stages' files: the prepare stage's leak figure and gene sources (with
the warning above the results), tuning curves from trials.csv, the quantum cost from resources.json, and a
missing key as a one-line error naming the file and the key."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import make_report
import prepare_autoregressive_data as prep
from quixer_rna import report
from quixer_rna.errors import UserError
from quixer_rna.stage import stage_run


def _isoforms(path: Path, genes: int = 20, seed: int = 0) -> None:
    """Genes of two isoforms sharing 3 of 4 exons of 120 nt, named in their headers."""
    rng = random.Random(seed)
    text = []
    for g in range(genes):
        exons = ["".join(rng.choice("ACGT") for _ in range(120)) for _ in range(4)]
        for i in range(2):
            seq = "".join(e for j, e in enumerate(exons) if j != 1 + i)
            text.append(f">NM_{g:04d}{i}.1 Homo sapiens gene (G{g}), mRNA\n{seq}\n")
    path.write_text("".join(text))


@pytest.fixture(scope="module")
def leaky(tmp_path_factory) -> Path:
    """A study folder holding one prepare stage split by transcript: isoforms on both sides, a leak."""
    runs = tmp_path_factory.mktemp("leaky")
    _isoforms(runs / "rna.fa")
    assert prep.main(["--fasta", str(runs / "rna.fa"), "--output_dir", str(runs / "prepare"), "--window_size", "8",
                      "--split_by", "transcript"]) == 0
    return runs


def test_the_leak_figure_warns_above_the_results_and_names_the_test_genes(leaky):
    result = report.make_report(leaky, n_boot=20)
    md = (leaky / "report.md").read_text()
    leak = result["dataset"]["leak"]
    assert leak["computed"] and leak["above_threshold"] and leak["length"] == 24
    warning = next(line for line in md.splitlines() if line.startswith("> **LEAK:**"))
    assert "above the threshold of 2.00%" in warning
    assert md.index("> **LEAK:**") < md.index("## Dataset") < md.index("## Results")
    test = next(s for s in leak["splits"] if s["split"] == "test")
    assert f"test {100 * test['share']:.2f}% ({test['shared']:,} of {test['queries']:,}" in md
    genes = result["dataset"]["leak_genes"]
    assert genes and all(g["shared"] > 0 for g in genes)
    assert [g["share"] for g in genes] == sorted((g["share"] for g in genes), reverse=True)
    assert f"| {genes[0]['gene']} | 1 |" in md  # per gene: split by transcript, each transcript is its own unit
    splits = {s["split"]: s for s in result["dataset"]["splits"]}
    assert splits["test"]["gene_sources"] == {"transcript": splits["test"]["transcripts"]}
    assert "gene from (transcripts) | train: transcript" in md


def test_a_missing_key_of_the_prepare_metadata_is_one_line_naming_file_and_key(leaky, tmp_path, capsys):
    runs = tmp_path / "runs"
    (runs / "prepare").mkdir(parents=True)
    for name in ("args.json", "leak.tsv"):
        (runs / "prepare" / name).write_text((leaky / "prepare" / name).read_text())
    meta = json.loads((leaky / "prepare" / "metadata.json").read_text())
    meta["sources_of_genes"] = meta.pop("gene_sources")  # a renamed key
    (runs / "prepare" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"prepare/metadata.json: no 'gene_sources'"):
        report.make_report(runs, n_boot=20)
    del meta["sources_of_genes"]["total"]
    meta["gene_sources"] = meta.pop("sources_of_genes")
    meta["leak"].pop("threshold")
    (runs / "prepare" / "metadata.json").write_text(json.dumps(meta))
    assert make_report.main(["--runs", str(runs)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "metadata.json: no 'leak.threshold'" in err[0], err


def _tune_stage(runs: Path, model: str, trials: list[tuple], parameters: bool, name: str = "",
                flags: dict | None = None, study: dict | None = None) -> None:
    folder = runs / "tune" / "raw" / (name or model)
    header = "number,state,value,params,duration_s,error" + (",parameters" if parameters else "")
    lines = [header]
    for number, state, value, width in trials:
        row = [str(number), state, "" if value is None else repr(value),
               '"' + json.dumps({"lr": 0.001 * (number + 1), "width": width}).replace('"', '""') + '"', "1.5", ""]
        lines.append(",".join(row + ([str(1000 * width)] if parameters else [])))
    complete = [t for t in trials if t[1] == "COMPLETE"]
    best = min(complete, key=lambda t: t[2])
    metrics = {"model": model, "budget": {"trials": len(trials), "epochs_per_trial": 1, "max_steps_per_epoch": 10},
               "best_trial": best[0], "best_value": best[2], "best_params": {"lr": 0.001 * (best[0] + 1), **(flags or {})},
               "trials_by_state": {}, **(study or {})}
    with stage_run(folder, "tune_quixer_hybrid", {"data_dir": str(runs / "tokens"), "model": model}, role="tune") as run:
        (folder / "trials.csv").write_text("\n".join(lines) + "\n")
        run.finish(metrics)


def test_tuning_curves_show_whether_the_search_was_still_improving(tmp_path):
    runs = tmp_path / "runs"
    _tune_stage(runs, "lstm", [(0, "COMPLETE", 3.0, 8), (1, "PRUNED", 3.5, 16), (2, "COMPLETE", 2.9, 8),
                               (3, "COMPLETE", 2.95, 4), (4, "FAIL", None, 4), (5, "COMPLETE", 2.5, 32)], True)
    _tune_stage(runs, "fnet", [(0, "COMPLETE", 2.0, 8), (1, "COMPLETE", 2.2, 8), (2, "COMPLETE", 2.1, 8)], False)
    _tune_stage(runs, "quixer", [(0, "COMPLETE", 2.0, 8)], False, "quixer_frozen", {"freeze_circuit": True})
    result = report.make_report(runs, n_boot=20)
    curves = {c["model"]: c for c in result["tuning"]}
    assert curves["quixer"]["label"] == "Quixer, frozen circuit"
    lstm, fnet = curves["lstm"], curves["fnet"]
    assert lstm["curve"] == [[0, 3.0], [2, 2.9], [3, 2.9], [5, 2.5]]
    assert (lstm["complete"], lstm["pruned"], lstm["failed"], lstm["trials"]) == (4, 1, 1, 6)
    assert lstm["best_trial"] == 5 and lstm["best_params"] == {"lr": 0.006, "width": 32}
    assert lstm["best_parameters"] == 32000 and lstm["still_improving"] is True
    assert fnet["best_parameters"] is None and fnet["still_improving"] is False and fnet["track"] == str(runs / "tokens")  # gone
    md = (runs / "report.md").read_text()
    assert "| `tune/raw/lstm` | 6 trials x 1 epochs x 10 steps | 4 / 1 (1 failed) | 2.5000 | 5 |" in md
    assert "| 32,000 | yes |" in md and "tuning_curves.png" in result["figures"]
    (runs / "tune" / "raw" / "fnet" / "trials.csv").write_text("number,value,params\n0,2.0,{}\n")
    with pytest.raises(UserError, match=r"fnet/trials.csv: no column state"):
        report.make_report(runs, n_boot=20)


def test_the_workers_of_one_study_make_one_tuning_row(tmp_path):
    """Two processes on one storage and study: one curve, from the worker that saw every trial, naming both."""
    runs = tmp_path / "runs"
    trials = [(0, "COMPLETE", 3.0, 8), (1, "COMPLETE", 2.8, 8), (2, "PRUNED", 3.1, 8)]
    study = {"storage": "sqlite:///runs/tune/raw/lstm/study.db", "study_name": "tune_lstm"}
    _tune_stage(runs, "lstm", trials[:2], False, "lstm", study={**study, "n_trials_with_value": 2})
    _tune_stage(runs, "lstm", trials, False, "lstm_worker2", study={**study, "n_trials_with_value": 3})
    _tune_stage(runs, "lstm", trials, False, "lstm_other", study={**study, "study_name": "tune_lstm_2"})
    result = report.make_report(runs, n_boot=20)
    rows = sorted((c["folder"], c["other_workers"], c["trials"]) for c in result["tuning"])
    assert rows == [("tune/raw/lstm_other", [], 3), ("tune/raw/lstm_worker2", ["tune/raw/lstm"], 3)]
    assert "| `tune/raw/lstm_worker2`, `tune/raw/lstm` |" in (runs / "report.md").read_text()


def test_the_quantum_cost_is_read_strictly_from_resources_json(tmp_path):
    runs = tmp_path / "runs"
    folder = runs / "circuit" / "clusters_quixer_seed0"
    scores = {"cross_entropy": 3.34, "perplexity": 28.2, "accuracy": 0.12, "top5_accuracy": 0.37}
    resources = {
        "run": {"run_dir": "runs/clusters/quixer_seed0", "checkpoint": "checkpoint_best.pt", "model_name": "quixer",
                "model_config": {}, "vocab_size": 32, "context_length": 31},
        "model": {"qubits": 3, "ansatz_layers": 1, "degree": 2, "tokens": 31, "vocab_size": 32}, "windows": [0, 1],
        "qubits": {"data": 3, "index_register": 5, "index_registers": 2, "index": 10, "degree": 2, "ancillas": 12,
                   "total": 15, "ancillas_measure_reset": 7, "total_measure_reset": 10},
        "select": "reduced", "degree_codes": [0, 1, 3],
        "select_constructions": {"reduced": {"two_qubit_gates": 1476, "depth": 2636, "gates": 3302,
                                             "select_two_qubit_gates": 1152}},
        "gates": {"CNOT": 1476, "total": 3302}, "two_qubit_gates": 1476, "single_qubit_gates": 1826, "depth": 2636,
        "two_qubit_gates_by_part": {"select_rotations": 1152}, "gate_set": "CNOT + rotations",
        "gate_counts_refer_to": "fresh index registers",
        "measure_reset": {"qubits": 10, "gates": {"total": 3302}, "two_qubit_gates": 1476, "depth": 2956,
                          "mid_circuit_measurements": 10},
        "counting_seconds": 0.5, "success_probability": {"mean": 0.668, "std": 0.001, "min": 0.667, "max": 0.669},
        "raw_shots_per_prediction": {"eps": 0.01, "at_mean_p": 44900.0, "mean_over_windows": 44900.0},
        "exact": {**scores, "success_probability": 0.668},
        "shots": [{"shots": 100, **scores, "cross_entropy": 3.5, "raw_shots_per_prediction": 449.0},
                  {"shots": 1000, **scores, "raw_shots_per_prediction": 4490.0}],
        "noise_model": "global", "noise": [], "unigram_cross_entropy": 3.4, "break_even_p2q": None,
        "break_even_reason": "no rate reaches the unigram", "check": None, "half_signal_p2q": None,
        "trajectories": None, "qasm": None, "targets": None, "device_runs": None, "fault_tolerant": {"skipped": "-"}}
    with stage_run(folder, "quixer_circuit", {"run_dir": str(runs / "clusters" / "quixer_seed0")}, role="circuit") as run:
        (folder / "resources.json").write_text(json.dumps(resources))
        run.finish({})
    result = report.make_report(runs, n_boot=20)
    (cost,) = result["quantum_cost"]
    assert (cost["qubits"], cost["two_qubit_gates"], cost["shots"], cost["cross_entropy_at_shots"]) == (15, 1476, 1000, 3.34)
    md = (runs / "report.md").read_text()
    assert "| `circuit/clusters_quixer_seed0` (quixer_seed0) | 15 | 1,476 | 2,636 | 0.668 | 4.49e+04 | 3.3400 (1,000 shots) | none |" in md
    del resources["depth"]
    (folder / "resources.json").write_text(json.dumps(resources))
    with pytest.raises(UserError, match=r"clusters_quixer_seed0/resources.json: no 'depth'"):
        report.make_report(runs, n_boot=20)


def test_timings_are_read_strictly(tmp_path):
    runs = tmp_path / "runs"
    with stage_run(runs / "x", "demo", {}, role="demo") as run:
        run.finish({})
    (runs / "timings.json").write_text(json.dumps({"settings": {"seed": 0}, "stages": [
        {"stage": "prepare", "folder": "prepare", "status": "completed", "seconds": 1.5}]}))
    report.make_report(runs, n_boot=20)
    assert "| prepare | completed | 1.5 s |" in (runs / "report.md").read_text()
    (runs / "timings.json").write_text(json.dumps({"settings": {}, "stages": [{"stage": "prepare", "status": "x"}]}))
    with pytest.raises(UserError, match=r"timings.json: no 'stages.0.seconds'"):
        report.make_report(runs, n_boot=20)


def test_the_dataset_table_says_what_soft_masking_and_the_region_split_left_out(tmp_path):
    """A chromosome with an N run and lowercase repeats, split by region with --soft_masked drop: the report's
    dataset table gives the bases read and the bases each rule left out, as metadata.json counts them."""
    rng = random.Random(1)
    bases = []
    for i in range(60):
        block = "".join(rng.choice("ACGT") for _ in range(1000))
        bases.append(block.lower() if i % 5 == 0 else block)
    bases.insert(30, "N" * 500)
    (tmp_path / "chr.fa").write_text(">chrT\n" + "".join(bases) + "\n")
    assert prep.main(["--fasta", str(tmp_path / "chr.fa"), "--output_dir", str(tmp_path / "prepare"), "--window_size",
                      "8", "--split_by", "region", "--block_size", "2000", "--soft_masked", "drop"]) == 0
    meta = json.loads((tmp_path / "prepare" / "metadata.json").read_text())
    assert meta["soft_masked"] == "drop" and meta["bases_left_out"]["soft_masked"] == 12 * 1000
    result = report.make_report(tmp_path, n_boot=20)
    assert result["dataset"]["soft_masked"] == "drop"
    md = (tmp_path / "report.md").read_text()
    assert "| blocks (the unit kept whole) |" in md and "| transcripts |" not in md
    row = next(line for line in md.splitlines() if line.startswith("| bases read, left out |"))
    left = meta["bases_left_out"]
    assert f"{meta['total_nucleotides']:,}; soft-masked (lowercase) 12,000, --soft_masked drop" in row
    assert f"non_acgt {left['non_acgt']:,}, guard {left['guard']:,}, soft_masked 12,000" in row

"""The results report of a study: every stage folder under a runs folder (found by its run record's role),
model results over seeds with transcript-bootstrap intervals, paired comparisons with the best model, the
raw k-mer track in bits per nucleotide, data scaling, tuning and the quantum cost of Quixer runs; written as
report.md, report.json and figures.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import UserError
from ..runio import METRICS_FILE, atomic_write_json, atomic_write_text, read_json
from .collect import Group, StageRecord, Track, collect_tracks, discover
from .figures import bits_figure, gain_figure, scaling_figure
from .stats import LEVEL, Interval, bootstrap_mean, mean_sd, paired_difference

SEEDLESS_MODELS = frozenset({"ngram", "markov"})  # counts: the same result whatever the seed

REPORT_MD = "report.md"
REPORT_JSON = "report.json"
TIMINGS_FILE = "timings.json"
GAIN_FIGURE = "gain_over_unigram.png"
BITS_FIGURE = "bits_per_nucleotide.png"
SCALING_FIGURE = "data_scaling.png"
RESOURCES_FILE = "resources.json"
MISSING = "-"
LN2 = math.log(2)


# ---- formatting ----------------------------------------------------------------------------------------------

def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return MISSING
        if abs(value) >= 1e5 or (value != 0 and abs(value) < 1e-3):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v, digits)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v, digits) for v in value)
    return str(value)


def _interval(interval: Interval | None, digits: int = 3) -> str:
    return MISSING if interval is None else f"[{interval.low:.{digits}f}, {interval.high:.{digits}f}]"


def _percent(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:.2f}%"


def _seconds(value: float | None) -> str:
    if value is None:
        return MISSING
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def _table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in lines]
    return "\n".join(out)


def _mean_sd(values: Sequence[float], digits: int = 4) -> str:
    mean, sd = mean_sd(values)
    return f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None else "")


# ---- one track --------------------------------------------------------------------------------------------------

def _nll_runs(group: Group) -> list[np.ndarray]:
    return [run.predictions.nll for run in group.with_predictions]


def _rankable(groups: list[Group]) -> Callable[[Group], bool]:
    """Which groups may be ranked: once any neural model has several seeds, a single seed of a model whose
    result depends on its seed (not the count models) ranks nothing; it is shown, compared, not ranked."""
    several = any(len(g.runs) > 1 for g in groups)
    return lambda g: not several or len(g.runs) > 1 or g.model in SEEDLESS_MODELS


def _rank(group: Group, best: Group | None, versus: Interval | None, rankable: bool) -> str:
    if group is best:
        return "best"
    if not rankable:
        return "one seed: not ranked"
    if versus is not None and versus.excludes_zero:
        return "worse than the best" if versus.point > 0 else "better than the best"
    return "not distinguishable from the best"


def summarize_track(track: Track, n_boot: int, seed: int) -> dict[str, Any]:
    """Rows (references, then models by mean test CE), each model's gain over the unigram and its paired
    comparison with the best model, as plain data."""
    rows: list[dict[str, Any]] = []
    sources = track.transcripts
    unigram = None
    if track.unigram_nll is not None:
        unigram = bootstrap_mean(track.unigram_nll, sources, n_boot, seed)
    groups = sorted(track.main_groups(), key=lambda g: np.mean(g.metric("loss")))
    rankable = _rankable(groups)
    best = next((g for g in groups if g.with_predictions and rankable(g)), None)
    for group in groups:
        losses = group.metric("loss")
        mean_loss, sd_loss = mean_sd(losses)
        nlls = _nll_runs(group)
        ce_interval = gain = versus = None
        if nlls and sources is not None:
            ce_interval = bootstrap_mean(np.mean(np.stack(nlls), 0), sources, n_boot, seed)
            if unigram is not None:
                gain = paired_difference([track.unigram_nll], nlls, sources, n_boot, seed)
            if best is not None and group is not best:
                versus = paired_difference(nlls, _nll_runs(best), sources, n_boot, seed)
        extra = [run.result.extra.get("mean_postselection") for run in group.runs]
        extra = [x for x in extra if isinstance(x, (int, float))]
        row = {
            "model": group.label,
            "kind": "model",
            "seeds": group.seeds,
            "parameters": group.runs[0].result.parameters,
            "cross_entropy": mean_loss,
            "cross_entropy_sd": sd_loss,
            "cross_entropy_per_seed": losses,
            "cross_entropy_ci95": ce_interval,
            "perplexity": float(np.mean(group.metric("perplexity"))),
            "accuracy": float(np.mean(group.metric("accuracy"))),
            "top5_accuracy": float(np.mean(group.metric("top5_accuracy"))),
            "gain": gain,
            "gain_per_seed": [float(np.mean(track.unigram_nll - nll)) for nll in nlls] if unigram is not None else [],
            "versus_best": versus,
            "rank": _rank(group, best, versus, rankable(group)),
            "train_seconds": float(np.mean([run.result.train_seconds for run in group.runs])),
            "postselection": float(np.mean(extra)) if extra else None,
            "folders": [str(run.record.folder) for run in group.runs],
        }
        if track.raw and track.nt_per_target:
            row["bits_per_nt"] = mean_loss / (track.nt_per_target * LN2)
            row["bits_per_nt_sd"] = None if sd_loss is None else sd_loss / (track.nt_per_target * LN2)
            if ce_interval is not None:
                row["bits_per_nt_ci95"] = Interval(*(v / (track.nt_per_target * LN2) for v in
                                                     (ce_interval.point, ce_interval.low, ce_interval.high)))
        rows.append(row)
    references = [{"model": "uniform", "kind": "reference", "cross_entropy": math.log(track.vocab_size),
                   "perplexity": float(track.vocab_size), "accuracy": 1.0 / track.vocab_size,
                   "top5_accuracy": min(5, track.vocab_size) / track.vocab_size}]
    if unigram is not None:
        references.append({"model": "unigram", "kind": "reference", "cross_entropy": unigram.point,
                           "cross_entropy_ci95": unigram, "perplexity": math.exp(unigram.point),
                           "accuracy": track.unigram_accuracy, "top5_accuracy": track.unigram_top5})
    if track.raw and track.nt_per_target:
        for ref in references:
            ref["bits_per_nt"] = ref["cross_entropy"] / (track.nt_per_target * LN2)
    return {"name": track.name, "fingerprint": track.fingerprint, "tokenizer": track.tokenizer,
            "vocab_size": track.vocab_size, "k": track.k, "nucleotides_per_target": track.nt_per_target,
            "best": best.label if best is not None else None, "rows": references + rows,
            "scaling": _scaling(track)}


def _scaling(track: Track) -> dict[str, list[dict[str, Any]]]:
    """Per model variant with more than one training fraction: (training k-mers, mean test CE, sd) per fraction."""
    series: dict[str, list[dict[str, Any]]] = {}
    labels = {json_key(g) for g in track.groups}
    for key in labels:
        groups = [g for g in track.groups if json_key(g) == key]
        if len({g.fraction for g in groups}) < 2:
            continue
        points = []
        for group in sorted(groups, key=lambda g: g.fraction):
            mean, sd = mean_sd(group.metric("loss"))
            kmers = float(np.mean([run.result.train["kmers"] for run in group.runs]))
            points.append({"fraction": group.fraction, "train_kmers": kmers, "cross_entropy": mean, "sd": sd,
                           "seeds": group.seeds})
        series[groups[0].label] = points
    return series


def _scaling_table(summary: dict[str, Any]) -> list[str]:
    """The scaling figure's numbers: one row per model, one column per training share."""
    shares = sorted({(p["fraction"], p["train_kmers"]) for points in summary["scaling"].values() for p in points})
    header = ["model", *[f"{fraction:g} ({kmers:,.0f} k-mers)" for fraction, kmers in shares]]
    lines = []
    for label, points in summary["scaling"].items():
        by_share = {(p["fraction"], p["train_kmers"]): p for p in points}
        lines.append([label, *[_ce_cell(by_share.get(share)) for share in shares]])
    return [f"{summary['name']}:", "", _table(header, lines), ""]


def _ce_cell(point: dict[str, Any] | None) -> str:
    if point is None:
        return MISSING
    return _fmt(point["cross_entropy"]) + ("" if point["sd"] is None else f" ± {_fmt(point['sd'])}")


def json_key(group: Group) -> str:
    return json.dumps(group.variant, sort_keys=True, default=str)


def _row_cells(row: dict[str, Any], raw: bool) -> list[str]:
    model = row["model"] if row["kind"] == "model" else f"*{row['model']}*"
    ce = row.get("cross_entropy_per_seed")
    cells = [
        model,
        _fmt(len(row["seeds"])) if row.get("seeds") else MISSING,
        _fmt(row.get("parameters")),
        _mean_sd(ce) if ce else _fmt(row["cross_entropy"]),
        _interval(row.get("cross_entropy_ci95")),
    ]
    if raw:
        bits = row.get("bits_per_nt")
        sd = row.get("bits_per_nt_sd")
        cells.append(MISSING if bits is None else f"{bits:.4f}" + (f" ± {sd:.4f}" if sd is not None else ""))
    cells += [
        _fmt(row.get("perplexity"), 2),
        _percent(row.get("accuracy")),
        _percent(row.get("top5_accuracy")),
        MISSING if row.get("gain") is None else f"{row['gain'].point:+.4f}",
        _interval(row.get("gain")),
        MISSING if row.get("versus_best") is None else f"{row['versus_best'].point:+.4f}",
        _interval(row.get("versus_best")),
        row.get("rank", MISSING) if row["kind"] == "model" else MISSING,
        _seconds(row.get("train_seconds")),
        _fmt(row.get("postselection")),
    ]
    return cells


def _header(raw: bool) -> list[str]:
    head = ["model", "seeds", "parameters", "test CE (nats), mean ± sd over seeds", "95% CI"]
    if raw:
        head.append("bits/nt")
    return head + ["perplexity", "accuracy", "top-5", "gain vs unigram (nats)", "gain 95% CI",
                   "vs best (nats)", "vs best 95% CI", "rank", "training time", "post-selection"]


# ---- other sections -----------------------------------------------------------------------------------------

def _first(stages: list[StageRecord], role: str) -> StageRecord | None:
    matches = [s for s in stages if s.role == role]
    return next((s for s in matches if s.status == "completed"), matches[0] if matches else None)


def is_synthetic(stages: list[StageRecord]) -> bool:
    for stage in stages:
        for source in (stage.json(METRICS_FILE), stage.json("metadata.json")):
            if source and source.get("synthetic") is True:
                return True
        if stage.role == "download" and str(stage.args.get("source", "")).lower() == "synthetic":
            return True
    return False


def _dataset_lines(prepare: StageRecord | None) -> list[list[str]]:
    meta = prepare.json("metadata.json") if prepare else None
    if not meta:
        return [["dataset", "no prepare stage found"]]
    splits = meta.get("splits", {})
    lines = []
    for label, key in (("transcripts", "sequences"), ("genes", "genes"), ("windows", "windows")):
        parts = " / ".join(f"{name} {_fmt(counts.get(key))}" for name, counts in splits.items())
        lines.append([label, f"{_fmt(meta.get(key))} ({parts})"])
    for label, key in (("k", "k"), ("stride (nt)", "stride"), ("window size (k-mers)", "window_size"),
                       ("window step (k-mers)", "window_step"), ("split rule", "split_rule"),
                       ("minimum length (nt)", "min_length"), ("skipped", "skipped")):
        lines.append([label, _fmt(meta.get(key))])
    return lines


def _tokenizer_lines(stages: list[StageRecord]) -> list[list[str]]:
    quantize, encode = _first(stages, "quantize"), _first(stages, "encode")
    lines = []
    meta = quantize.json("metadata.json") if quantize else None
    if meta:
        lines += [["clusters", _fmt(meta.get("n_clusters"))], ["token entropy (bits)", _fmt(meta.get("token_entropy_bits"))],
                  ["k-means inertia", _fmt(meta.get("inertia"))],
                  ["k-mers sharing a token with a Hamming-1 neighbour (chance)",
                   f"{_percent(meta.get('hamming_neighbour_share'))} ({_percent(meta.get('hamming_neighbour_share_shuffled'))})"]]
    meta = encode.json("metadata.json") if encode else None
    if meta:
        lines += [["encoder", f"lambeq {meta.get('lambeq_version')}, {meta.get('ansatz')} x {meta.get('layers')}, "
                              f"{meta.get('qubits')} qubits, {meta.get('readout')}, context {meta.get('context')}"],
                  ["distinct embeddings", _fmt(meta.get("distinct_embeddings"))]]
    return lines or [["tokenizer", "no quantize stage found"]]


def _relative(path: Path, runs_dir: Path) -> str:
    """A path inside the runs folder as the report shows it."""
    return path.relative_to(runs_dir).as_posix()


def _tuning_section(stages: list[StageRecord], runs_dir: Path) -> tuple[list[str], list[dict[str, Any]]]:
    tunes = [s for s in stages if s.role == "tune" and s.json(METRICS_FILE)]
    if not tunes:
        return [], []
    out = ["## Tuning", "", "Every tuned model got the same budget; each was then trained with its best_params.json.", ""]
    lines, records = [], []
    for stage in tunes:
        metrics = stage.json(METRICS_FILE) or {}
        budget = metrics.get("budget") or {}
        best = metrics.get("best_params") or {}
        lines.append([str(metrics.get("model")), f"`{_relative(stage.folder, runs_dir)}`",
                      _fmt(budget.get("trials")),
                      _fmt(budget.get("epochs_per_trial")), _fmt(budget.get("max_steps_per_epoch")),
                      _fmt(metrics.get("trials_by_state", {}).get("COMPLETE")), _fmt(metrics.get("best_value")),
                      _fmt({k: v for k, v in best.items() if k != "model"}, 3)])
        records.append({"folder": stage.name, **{k: metrics.get(k) for k in ("model", "budget", "best_value", "best_params",
                                                                              "search_space", "trials_by_state")}})
    out += [_table(("model", "folder", "trials", "epochs per trial", "steps per epoch", "complete", "best val loss",
                    "tuned hyperparameters"), lines), ""]
    return out, records


def _quantum_section(stages: list[StageRecord], runs_dir: Path) -> tuple[list[str], list[dict[str, Any]]]:
    circuits = [s for s in stages if s.role == "circuit" and (s.folder / RESOURCES_FILE).is_file()]
    if not circuits:
        return [], []
    lines, records = [], []
    for stage in circuits:
        res = read_json(stage.folder / RESOURCES_FILE, "resources")
        qubits = res.get("qubits") or {}
        shots = {int(row.get("shots", -1)): row for row in res.get("shots") or [] if isinstance(row, dict)}
        per_prediction = res.get("raw_shots_per_prediction") or {}
        success = res.get("success_probability") or {}
        row = {
            "run": str(stage.args.get("run_dir")),
            "qubits": qubits.get("total", qubits),
            "two_qubit_gates": res.get("two_qubit_gates"),
            "depth": res.get("depth"),
            "success_probability": success.get("mean"),
            "raw_shots_per_prediction": per_prediction.get("mean_over_windows", per_prediction.get("at_mean_p")),
            "eps": per_prediction.get("eps"),
            "cross_entropy_at_1000_shots": (shots.get(1000) or {}).get("cross_entropy"),
            "break_even_p2q": res.get("break_even_p2q"),
        }
        records.append(row)
        where = f"`{_relative(stage.folder, runs_dir)}` ({Path(row['run']).name})"
        shots_needed = row["raw_shots_per_prediction"]
        lines.append([where, _fmt(row["qubits"]), _fmt(row["two_qubit_gates"]), _fmt(row["depth"]),
                      _fmt(row["success_probability"]), MISSING if shots_needed is None else f"{shots_needed:.3g}",
                      _fmt(row["cross_entropy_at_1000_shots"]), _fmt(row["break_even_p2q"], 3)])
    out = ["## Quantum cost", "",
           "The trained Quixer as a circuit a device could run (quixer_circuit.py: PennyLane, checked against the "
           "simulator). Raw shots per prediction: three measurement settings, each 1/eps^2 kept shots at eps = 0.01, "
           "divided by the post-selection success probability. Break-even: the two-qubit error rate at which the "
           "gain over the unigram is gone (global depolarizing approximation).", "",
           _table(("circuit (trained run)", "qubits", "two-qubit gates", "depth", "mean success probability", "raw shots per prediction",
                   "test CE at 1000 shots", "break-even p (2q)"), lines), ""]
    return out, records


def _timings_section(runs_dir: Path) -> tuple[list[str], dict[str, Any] | None]:
    path = runs_dir / TIMINGS_FILE
    timings = read_json(path, "timings") if path.is_file() else None
    if not isinstance(timings, dict):
        return [], None
    out = ["## Pipeline", ""]
    settings = timings.get("settings")
    if isinstance(settings, dict) and settings:
        out += ["Settings (`quixer_rna/study/settings.py`):", "", _table(("setting", "value"), [[str(k), _fmt(v)] for k, v in
                                                                                           settings.items()]), ""]
    stages = [s for s in timings.get("stages") or [] if isinstance(s, dict)]
    if stages:
        lines = [[str(s.get("stage")), _fmt(s.get("status")), _seconds(s.get("seconds"))] for s in stages]
        # A sum, not the elapsed time: the token tracks run side by side, and a rerun adds only what it ran.
        lines.append(["sum of the stages", "", _seconds(sum(float(s.get("seconds") or 0) for s in stages))])
        out += ["Wall time per stage (this machine):", "", _table(("stage", "status", "wall time"), lines), ""]
    return out, timings


def _plain(value: Any) -> Any:
    if isinstance(value, Interval):
        return value.to_json()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# ---- the report -----------------------------------------------------------------------------------------------

def make_report(runs_dir: str | os.PathLike, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Write report.md, report.json and the figures under `runs_dir`; returns report.json's content."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise UserError(f"--runs {runs_dir}: folder not found")
    stages, problems = discover(runs_dir)
    if not stages:
        raise UserError(f"--runs {runs_dir}: no run records (args.json with a stage and role) found; run a stage first")
    tracks, more = collect_tracks(stages)
    problems += more
    summaries = [summarize_track(track, n_boot, seed) for track in tracks]
    synthetic = is_synthetic(stages)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    commit = next((s.record.get("git_commit") for s in stages if s.record.get("git_commit")), MISSING)

    md = ["# quixer-rna results", ""]
    if synthetic:
        md += ["> **SYNTHETIC DATA.** These transcripts were generated offline by `download_rna_sequences.py --source "
               "synthetic`; they are not human RNA and no number below says anything about real mRNA.", ""]
    md += [f"Runs folder `{runs_dir}`, report written {now}, code commit `{commit}`.", ""]
    md += ["## Dataset", "", _table(("", "value"), _dataset_lines(_first(stages, "prepare"))), ""]
    md += ["## Tokenizer", "", _table(("", "value"), _tokenizer_lines(stages)), ""]

    md += ["## Results (test split)", ""]
    if not summaries:
        md += ["No model has finished: no results table.", ""]
    for summary in summaries:
        raw = summary["tokenizer"] == "raw k-mers"
        md += [f"### {summary['name']}", "", _table(_header(raw), [_row_cells(r, raw) for r in summary["rows"]]), ""]
    if summaries:
        md += [
            f"Cross-entropy is the mean negative log-likelihood of the last token of each test window (nats per target), "
            f"its mean ± standard deviation taken over the seeds of each model. Intervals are {int(LEVEL * 100)}% "
            f"percentile bootstraps ({n_boot} resamples, seed {seed}) that resample whole transcripts, because windows "
            "of one transcript are correlated; a model's interval and comparisons use its per-window losses averaged "
            "over its seeds. Gain: the unigram's cross-entropy minus the model's on the same windows (positive: better "
            "than the unigram). vs best: the model's cross-entropy minus the best model's, paired window by window; a "
            "model is ranked below the best only where that interval excludes zero; with several seeds per model, the best "
            "is chosen among models run with several seeds (and the seed-free n-gram and Markov models), and a "
            "single-seed variant is compared but not ranked. Bits per nucleotide (raw k-mers): "
            "cross-entropy / (new nucleotides per target x ln 2). The unigram counts the train split's targets with "
            "add-one smoothing. Reference rows are in italics; one seed gives no spread (no ± part).", ""]
    gain_panels = [{"title": s["name"], "rows": [
        {"label": r["model"], "gain": r["gain"].point, "low": r["gain"].low, "high": r["gain"].high,
         "seeds": r["gain_per_seed"]} for r in s["rows"] if r["kind"] == "model" and r.get("gain") is not None]}
        for s in summaries]
    figures = []
    if gain_figure(gain_panels, runs_dir / GAIN_FIGURE):
        figures.append(GAIN_FIGURE)
        md += [f"![gain over the unigram]({GAIN_FIGURE})", ""]
    raw_summary = next((s for s in summaries if s["tokenizer"] == "raw k-mers"), None)
    if raw_summary is not None:
        rows = [{"label": r["model"], "bits": r["bits_per_nt"],
                 "low": r["bits_per_nt_ci95"].low if r.get("bits_per_nt_ci95") else None,
                 "high": r["bits_per_nt_ci95"].high if r.get("bits_per_nt_ci95") else None}
                for r in raw_summary["rows"] if r.get("bits_per_nt") is not None]
        if bits_figure(rows, runs_dir / BITS_FIGURE, f"{raw_summary['name']}: bits per nucleotide"):
            figures.append(BITS_FIGURE)
            md += [f"![bits per nucleotide]({BITS_FIGURE})", "",
                   "Dotted lines: published bits per nucleotide of human coding sequence (Loewenstern and Yianilos 1997). "
                   "Our targets are whole mRNAs with UTRs, not coding sequence alone, and a model here sees at most one "
                   "window of context: the lines place the numbers, they are not the same task.", ""]
    scaling_panels = [{"title": s["name"], "series": {label: [(p["train_kmers"], p["cross_entropy"], p["sd"])
                                                              for p in points] for label, points in s["scaling"].items()},
                       "unigram": next((r["cross_entropy"] for r in s["rows"] if r["model"] == "unigram"), None)}
                      for s in summaries]
    if scaling_figure(scaling_panels, runs_dir / SCALING_FIGURE):
        figures.append(SCALING_FIGURE)
        md += ["### Data scaling", "", f"![test cross-entropy against training k-mers]({SCALING_FIGURE})", "",
               "Each point trains on a seeded share of the training genes (whole genes; smaller shares are part of "
               "larger ones) and is scored on the full test split. Test cross-entropy (nats), mean ± sd over seeds:",
               ""]
        md += [line for summary in summaries if summary["scaling"] for line in _scaling_table(summary)]

    tuning_md, tuning = _tuning_section(stages, runs_dir)
    md += tuning_md
    quantum_md, quantum = _quantum_section(stages, runs_dir)
    md += quantum_md

    curves = [s for s in stages if s.role == "train" and (s.folder / "training_curves.png").is_file()]
    if curves:
        md += ["## Training curves", ""]
        for stage in curves:
            md += [f"- [`{_relative(stage.folder, runs_dir)}`]({_relative(stage.folder / 'training_curves.png', runs_dir)})"]
        md += [""]
    timing_md, timings = _timings_section(runs_dir)
    md += timing_md
    md += ["## Stages", "", _table(("record", "stage", "role", "status"),
                                   [[f"`{_relative(s.path, runs_dir)}`", s.stage, s.role, s.status]
                                    for s in stages]), ""]
    if problems:
        md += ["Problems met:", "", *[f"- {p}" for p in problems], ""]

    report = {
        "runs_dir": str(runs_dir),
        "generated": now,
        "synthetic": synthetic,
        "bootstrap": {"resamples": n_boot, "seed": seed, "level": LEVEL, "unit": "transcript"},
        "tracks": _plain(summaries),
        "tuning": tuning,
        "quantum_cost": quantum,
        "stages": [{"record": _relative(s.path, runs_dir), "stage": s.stage, "role": s.role,
                    "status": s.status} for s in stages],
        "problems": problems,
        "timings": timings,
        "figures": figures,
    }
    atomic_write_json(runs_dir / REPORT_JSON, report)
    atomic_write_text(runs_dir / REPORT_MD, "\n".join(md))
    return report

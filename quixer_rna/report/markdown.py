"""report.md from the report's records: the verdict at a glance, the data set and its leak figure, per token
track a main table (what a reader compares) and a second table (the rest), data scaling, tuning curves,
the quantum cost, timings and the stages. Nothing here computes a statistic; it only writes records."""

from __future__ import annotations

from pathlib import Path

from . import fmt
from .figures import BITS_FIGURE, GAIN_FIGURE, SCALING_FIGURE, TUNING_FIGURE
from .fmt import NONE, table
from .quantum import markdown as quantum_markdown
from .records import Convergence, Dataset, ModelRow, Report, Tokenizer, TrackSummary, TuningCurve

COUNT_FOOTNOTE = "count models (n-gram, Markov) have no training to converge"
LITERATURE_NOTE = ("Dotted lines: published bits per nucleotide of human coding sequence (Loewenstern and Yianilos "
                   "1997). Our targets are whole mRNAs with UTRs, not coding sequence alone, and a model here sees at "
                   "most one window of context: the lines place the numbers, they are not the same task.")


def converged(c: Convergence) -> str:
    if c.hit_budget is None:
        return NONE
    if c.hit_budget == 0:
        return "yes"
    plateau = f" ({c.on_plateau} on the unigram plateau throughout)" if c.on_plateau else ""
    return f"no: {c.hit_budget} of {c.seeds} seed{'s' * (c.seeds > 1)} hit the budget{plateau}"


def _stopped(row: ModelRow) -> str:
    return ", ".join(f"{why} {n}" for why, n in sorted(row.stopped_by.items())) or NONE


# ---- at a glance ------------------------------------------------------------------------------------------------

# A row's rank as the at-a-glance list says it.
VERDICTS = {"better": "better than it on test", "equivalent": "equivalent to it",
            "equivalent, though better": "equivalent to it, though better", "equivalent, though worse":
            "equivalent to it, though worse", "not distinguishable": "not distinguishable from it",
            "worse": "worse than it", "one seed: not ranked": "one seed, compared but not ranked"}


def _names(labels: list[str]) -> str:
    return "; ".join(f"*{label}*" for label in labels)


def glance(report: Report) -> list[str]:
    """Per track: the best model and its gain over the unigram, every other model's verdict against it, what
    Quixer's circuit adds over its controls, and the models that hit their training budget."""
    out = ["## At a glance", ""]
    for track in report.tracks:
        best = next((r for r in track.rows if r.rank == "best"), None)
        if best is None:
            out += [f"- **{track.name}**: no model can be ranked (no per-window predictions).", ""]
            continue
        gain = "" if best.gain is None else f", {fmt.with_interval(best.gain)} nats over the unigram"
        out.append(f"- **{track.name}**: best on validation *{best.label}*, test CE "
                   f"{fmt.mean_sd(best.cross_entropy, best.cross_entropy_sd)}{gain}.")
        for verdict, said in VERDICTS.items():
            labels = [r.label for r in track.rows if r.rank == verdict]
            if labels:
                out.append(f"  - {said}: {_names(labels)}")
        for check in track.circuit:
            out.append(f"  - *{check.quixer}* minus *{check.control}*: {fmt.with_interval(check.comparison.difference)} "
                       f"nats, {check.comparison.verdict}")
        budget = [r.label for r in track.rows if r.convergence.hit_budget]
        if budget:
            out.append(f"  - hit the training budget before converging: {_names(budget)}")
        out.append("")
    return out


# ---- data -------------------------------------------------------------------------------------------------------

def leak_warning(dataset: Dataset | None) -> list[str]:
    if dataset is None or not dataset.leak.above_threshold:
        return []
    shares = " and ".join(f"{fmt.percent(s.share)} of {s.split}" for s in dataset.leak.splits)
    return [f"> **LEAK:** {shares} {dataset.leak.length}-mers occur in train, above the threshold of "
            f"{fmt.percent(dataset.leak.threshold)}: held-out genes share sequence with training genes, so the test "
            "scores below flatter the models (see Dataset).", ""]


def dataset_section(dataset: Dataset | None, tokenizer: Tokenizer) -> list[str]:
    out = ["## Dataset", ""]
    if dataset is None:
        return out + ["No completed prepare stage in this folder.", ""]
    per_split = lambda attr: " / ".join(f"{s.split} {getattr(s, attr):,}" for s in dataset.splits)  # noqa: E731
    # split by region, the units are blocks of the input's records, not transcripts or genes
    units, groups = ("blocks", "blocks (the unit kept whole)") if dataset.split_by == "region" else \
        ("transcripts", "genes (the unit kept whole)")
    lines = [["folder", f"`{dataset.folder}`"],
             [units, f"{dataset.transcripts:,} ({per_split('transcripts')})"],
             [groups, f"{dataset.genes:,} ({per_split('genes')})"],
             ["windows", f"{dataset.windows:,} ({per_split('windows')})"],
             ["k, stride (nt)", f"{dataset.k}, {dataset.stride}"],
             ["window size, step (k-mers)", f"{dataset.window_size}, {dataset.window_step}"],
             ["split", f"--split_by {dataset.split_by}: {dataset.split_rule}"],
             ["minimum length (nt)", f"{dataset.min_length:,}"], ["skipped", fmt.plain(dataset.skipped)]]
    if dataset.total_nucleotides is not None and dataset.bases_left_out is not None:
        masked = (f"; soft-masked (lowercase) {dataset.soft_masked_bases or 0:,}, --soft_masked {dataset.soft_masked}"
                  if dataset.soft_masked else "")
        lines.append(["bases read, left out", f"{dataset.total_nucleotides:,}{masked}; left out: "
                      + ", ".join(f"{name} {count:,}" for name, count in dataset.bases_left_out.items())])
    sources = sorted({name for s in dataset.splits for name in s.gene_sources})
    lines.append(["gene from (transcripts)", "; ".join(
        f"{s.split}: " + ", ".join(f"{name} {s.gene_sources.get(name, 0):,}" for name in sources) for s in dataset.splits)])
    leak = dataset.leak
    if leak.computed:
        lines.append([f"leak: {leak.length}-mers found in train", "; ".join(
            f"{s.split} {fmt.percent(s.share)} ({s.shared:,} of {s.queries:,}; {s.over_half_shared} of {s.transcripts} "
            "transcripts over half shared)" for s in leak.splits)
            + f"; threshold {fmt.percent(leak.threshold)}" + (" - ABOVE" if leak.above_threshold else "")])
    else:
        lines.append(["leak", f"not computed: {leak.reason}"])
    out += [table(("", "value"), lines), ""]
    if leak.computed:
        if dataset.leak_genes:
            out += [f"Test genes with the most {leak.length}-mers found in train (leak.tsv summed per gene):", "",
                    table(("gene", "transcripts", f"{leak.length}-mers", "found in train", "share"),
                          [[g.gene, f"{g.transcripts:,}", f"{g.queries:,}", f"{g.shared:,}", fmt.percent(g.share)]
                           for g in dataset.leak_genes]), ""]
        else:
            out += [f"No test gene shares a {leak.length}-mer with train.", ""]
    out += ["## Tokenizer", ""]
    rows = []
    if tokenizer.clusters is not None:
        rows += [["clusters", f"{tokenizer.clusters:,}"], ["token entropy (bits)", fmt.number(tokenizer.entropy_bits)],
                 ["k-means inertia", fmt.number(tokenizer.inertia)],
                 ["k-mers sharing a token with a Hamming-1 neighbour (chance)",
                  f"{fmt.percent(tokenizer.hamming_share)} ({fmt.percent(tokenizer.hamming_share_shuffled)})"]]
    if tokenizer.encoder is not None:
        rows += [["encoder", tokenizer.encoder], ["distinct embeddings", fmt.number(tokenizer.distinct_embeddings)]]
    return out + ([table(("", "value"), rows)] if rows else ["No completed quantize stage in this folder."]) + [""]


# ---- results ----------------------------------------------------------------------------------------------------

def main_table(track: TrackSummary) -> str:
    lines = [[f"*{ref.label}*", NONE, fmt.number(ref.cross_entropy), fmt.interval(ref.interval), NONE, NONE, NONE, NONE]
             for ref in track.references]
    for row in track.rows:
        versus = NONE if row.versus_best is None else fmt.with_interval(row.versus_best.difference)
        lines.append([row.label, f"{row.parameters:,}", fmt.mean_sd(row.cross_entropy, row.cross_entropy_sd),
                      fmt.interval(row.interval), fmt.with_interval(row.gain), versus, row.rank,
                      converged(row.convergence)])
    return table(("model", "parameters", "test CE (nats), mean ± sd", "95% interval", "gain over unigram [95%]",
                  "vs best [95%]", "rank", "converged"), lines)


def second_table(track: TrackSummary) -> str:
    post = any(row.postselection is not None for row in track.rows)
    header = ["model", "seeds", "val CE", "accuracy", "top-5", "perplexity", *(["bits/nt"] * track.raw),
              "epochs seen", "training time", "stopped by", *(["post-selection"] * post)]
    lines = []
    for ref in track.references:
        lines.append([f"*{ref.label}*", NONE, NONE, fmt.percent(ref.accuracy), fmt.percent(ref.top5_accuracy),
                      fmt.number(ref.perplexity, 2), *([fmt.number(ref.bits_per_nt)] * track.raw), NONE, NONE, NONE,
                      *([NONE] * post)])
    for row in track.rows:
        bits = [fmt.mean_sd(row.bits_per_nt, row.bits_per_nt_sd)] if track.raw and row.bits_per_nt is not None else \
            [NONE] * track.raw
        seeds = "none (counts)" if row.convergence.hit_budget is None else ", ".join(map(str, row.seeds))
        lines.append([row.label, seeds, fmt.number(row.val_loss), fmt.percent(row.accuracy),
                      fmt.percent(row.top5_accuracy), fmt.number(row.perplexity, 2), *bits,
                      fmt.number(row.epochs_seen, 2), fmt.seconds(row.train_seconds), _stopped(row),
                      *([fmt.number(row.postselection)] * post)])
    return table(header, lines)


def results_section(report: Report) -> list[str]:
    out = ["## Results (test split)", ""]
    if not report.tracks:
        return out + ["No model has finished: no results table.", ""]
    for track in report.tracks:
        genes = "" if track.test_genes is None else f" - {track.test_windows:,} test windows of {track.test_genes:,} genes"
        out += [f"### {track.name}{genes}", "", main_table(track), "", second_table(track), ""]
        if track.circuit:
            out += ["What the trained circuit adds: Quixer minus each control on the same windows (negative: Quixer "
                    "is better, so its circuit helps):", "",
                    table(("Quixer", "control", "parameters (Quixer / control)", "difference [95%]", "verdict"),
                          [[c.quixer, c.control, f"{c.quixer_parameters:,} / {c.control_parameters:,}",
                            fmt.with_interval(c.comparison.difference), c.comparison.verdict] for c in track.circuit]),
                    ""]
    b = report.bootstrap
    out += ["How to read these tables:", "",
            "- Test CE: the mean negative log-likelihood of each test window's last token (nats per target), mean ± "
            "sd over the seeds of each model.",
            f"- Intervals are {b.level:.0%} percentile bootstraps ({b.resamples:,} replicates, seed {b.seed}). Each "
            f"replicate resamples whole {b.unit}s (the unit the split kept whole) and each model's seeds, both with "
            "replacement, so an interval holds the spread over test genes and over seeds (a one-seed model's holds "
            "none over seeds). Every model of a track is resampled on the same genes: gains and comparisons are paired.",
            "- Gain: the unigram's CE minus the model's on the same windows (positive: better than the unigram). vs "
            "best: the model's CE minus the best model's (positive: worse).",
            "- The best model is the one with the lowest mean validation loss, not the lowest test CE. The models "
            "that can be chosen are those with several seeds and the count models; once any neural model has several "
            "seeds, a single-seed variant is compared but not ranked.",
            f"- Rank against the best: worse or better where the 95% interval of the difference excludes zero; "
            f"equivalent where its {b.tost_level:.0%} interval lies inside ±{fmt.number(b.margin)} nats, the margin "
            "declared before the comparison (two one-sided tests); otherwise not distinguishable. \"Equivalent, "
            "though worse\": a real difference smaller than the margin.",
            f"- Converged: \"no\" when a seed stopped at its training budget before its validation loss stopped "
            f"improving; \"-\": {COUNT_FOOTNOTE}.",
            "- The uniform and unigram rows are references (italics); the unigram counts the train split's targets "
            "with add-one smoothing. Bits per nucleotide (raw k-mers): CE / (new nucleotides per target x ln 2).", ""]
    return out


def scaling_section(report: Report, figure: str | None) -> list[str]:
    tracks = [t for t in report.tracks if t.scaling]
    if not tracks:
        return []
    out = ["### Data scaling", ""]
    if figure:
        out += [f"![test cross-entropy against training k-mers]({figure})", ""]
    out += ["Each point trains on a seeded share of the training genes (whole genes; smaller shares are part of "
            "larger ones) and is scored on the full test split; the interval resamples test genes and seeds. Epochs "
            "seen: how much training each share got; the shares compare data, not training, only where every seed "
            "converged.", ""]
    for track in tracks:
        lines = [[label, f"{p.parameters:,}", fmt.number(p.fraction, 3), f"{p.train_kmers:,.0f}", str(len(p.seeds)),
                  fmt.mean_sd(p.cross_entropy, p.cross_entropy_sd), fmt.interval(p.interval),
                  fmt.number(p.epochs_seen, 2), converged(p.convergence)]
                 for label, points in track.scaling.items() for p in points]
        header = ("model", "parameters", "share of genes", "training k-mers", "seeds", "test CE, mean ± sd",
                  "95% interval", "epochs seen", "converged")
        out += [f"{track.name}:", "", table(header, lines), ""]
    return out


def tuning_section(curves: tuple[TuningCurve, ...], figure: str | None) -> list[str]:
    if not curves:
        return []
    out = ["## Tuning", "", "Every tuned model got the same budget; each was then trained with its best_params.json. "
           "\"Still improving\" is yes where the best trial came in the last third of the trials, so more trials "
           "may well find better settings. Several folders in one row: the workers of one study.", ""]
    if figure:
        out += [f"![best validation loss against trials]({figure})", ""]
    lines = []
    for c in sorted(curves, key=lambda c: (c.track, c.model)):
        steps = c.budget["max_steps_per_epoch"]
        budget = f"{c.budget['trials']} trials x {c.budget['epochs_per_trial']} " + \
            (f"epochs x {steps} steps" if steps else "whole epochs")
        folders = ", ".join(f"`{folder}`" for folder in (c.folder, *c.other_workers))
        lines.append([c.label, c.track, folders, budget, f"{c.complete} / {c.pruned}" + (f" ({c.failed} failed)"
                      if c.failed else ""), fmt.number(c.best_value), NONE if c.best_trial is None else str(c.best_trial),
                      fmt.plain(c.best_params, 3), fmt.number(c.best_parameters),
                      NONE if c.still_improving is None else "yes" if c.still_improving else "no"])
    return out + [table(("model", "track", "folder", "budget", "complete / pruned",
                         "best val loss", "best trial", "its hyperparameters", "its parameters", "still improving"),
                        lines), ""]


def code_commits(report: Report) -> str:
    """Which code wrote the runs: one commit, or each with its number of run records."""
    if len(report.commits) <= 1:
        return f"code commit `{report.commits[0].commit if report.commits else NONE}`"
    listed = ", ".join(f"`{c.commit[:12]}` ({c.records})" for c in report.commits)
    return f"run records from {len(report.commits)} code commits (records per commit): {listed}"


def render(report: Report) -> str:
    """The whole report.md."""
    drawn = set(report.figures)
    md = ["# quixer-rna results", ""]
    if report.synthetic:
        md += ["> **SYNTHETIC DATA.** These transcripts were generated offline by `download_rna_sequences.py --source "
               "synthetic`; they are not human RNA and no number below says anything about real mRNA.", ""]
    md += leak_warning(report.dataset)
    md += [f"Runs folder `{report.runs_dir}`, report written {report.generated}, {code_commits(report)}.", ""]
    if report.tracks:
        md += glance(report)
    md += dataset_section(report.dataset, report.tokenizer)
    md += results_section(report)
    if GAIN_FIGURE in drawn:
        md += [f"![gain over the unigram]({GAIN_FIGURE})", ""]
    if BITS_FIGURE in drawn:
        md += [f"![bits per nucleotide]({BITS_FIGURE})", "", LITERATURE_NOTE, ""]
    md += scaling_section(report, SCALING_FIGURE if SCALING_FIGURE in drawn else None)
    md += tuning_section(report.tuning, TUNING_FIGURE if TUNING_FIGURE in drawn else None)
    md += quantum_markdown(report.quantum_cost)
    if report.training_curves:
        md += ["## Training curves", "", *[f"- [`{Path(p).parent.as_posix()}`]({p})" for p in report.training_curves], ""]
    if report.timings is not None:
        t = report.timings
        if t.settings:
            md += ["## Pipeline", "", "Settings (`quixer_rna/study/settings.py`):", "",
                   table(("setting", "value"), [[k, fmt.plain(v)] for k, v in t.settings.items()]), ""]
        if t.stages:
            lines = [[s.stage, s.status, fmt.seconds(s.seconds)] for s in t.stages]
            # A sum, not the elapsed time: the token tracks run side by side, and a rerun adds only what it ran.
            lines.append(["sum of the stages", "", fmt.seconds(sum(s.seconds for s in t.stages))])
            md += ["Wall time per stage (this machine):", "", table(("stage", "status", "wall time"), lines), ""]
    md += ["## Stages", "", table(("record", "stage", "role", "status"),
                                  [[f"`{s.record}`", s.stage, s.role, s.status] for s in report.stages]), ""]
    if report.problems:
        md += ["Problems met:", "", *[f"- {p}" for p in report.problems], ""]
    return "\n".join(md)

"""The results report: reads every stage folder under a runs folder, bootstraps confidence intervals
by transcript, and writes report.md, report.json and the figures.

Differences between models on real mRNA are tenths of a nat, and the windows of one transcript are
correlated, so every cross-entropy gets a 95% interval from resampling whole transcripts (sources)
with replacement: a window-level bootstrap would pretend the windows are independent and give
intervals that are far too narrow.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import UserError
from .runio import ARGS_FILE, METRICS_FILE, atomic_open, atomic_write_json, atomic_write_text, read_json

LOG = logging.getLogger("quixer_rna.report")

METADATA_FILE = "metadata.json"
PREDICTIONS_FILE = "test_predictions.pt"
CURVES_FILE = "training_curves.png"
TIMINGS_FILE = "timings.json"
PERPLEXITY_FIGURE = "test_perplexity.png"
REPORT_MD = "report.md"
REPORT_JSON = "report.json"
LEVEL = 0.95
# Bootstrap replicates are drawn in blocks so memory stays bounded with many transcripts.
_BLOCK = 256
# What a folder's args.json "stage" name says it is; trainers are also recognised by their test metrics.
_ROLE_KEYWORDS = (
    ("download", "download"),
    ("classical_prep", "raw_tokens"),
    ("classical_benchmark", "raw_tokens"),
    ("prepare_classical", "raw_tokens"),
    ("prepare", "prepare"),
    ("quantiz", "quantize"),
    ("encode", "encode"),
    ("lambeq", "encode"),
    ("tune", "tune"),
    ("train", "train"),
)
MISSING = "-"
# Pipeline order, for listing stages and table rows in the order they ran.
_ROLE_ORDER = ("download", "prepare", "raw_tokens", "encode", "quantize", "train", "tune", "other")


@dataclass
class StageRun:
    """One stage's output folder as its args.json, metrics.json and metadata.json describe it."""

    path: Path
    stage: str
    status: str
    role: str
    args: dict[str, Any]
    metrics: dict[str, Any] | None
    metadata: dict[str, Any] | None
    git_commit: str | None = None
    started: str = ""

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class Interval:
    point: float
    low: float
    high: float


@dataclass
class Row:
    """One line of the results table; None shows as '-'."""

    model: str
    token_set: str
    kind: str  # "model", "reference"
    run: str | None = None
    parameters: int | None = None
    cross_entropy: float | None = None
    ce_interval: Interval | None = None
    perplexity: float | None = None
    accuracy: float | None = None
    top5_accuracy: float | None = None
    gain: Interval | None = None
    epochs: int | None = None
    train_seconds: float | None = None
    postselection: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def bits(self) -> float | None:
        return None if self.cross_entropy is None else self.cross_entropy / math.log(2)

    @property
    def ppl_interval(self) -> Interval | None:
        if self.ce_interval is None:
            return None
        return Interval(*(math.exp(v) for v in (self.ce_interval.point, self.ce_interval.low, self.ce_interval.high)))

    def to_json(self) -> dict[str, Any]:
        ppl = self.ppl_interval
        return {
            "model": self.model,
            "token_set": self.token_set,
            "kind": self.kind,
            "run": self.run,
            "parameters": self.parameters,
            "test_cross_entropy_nats": self.cross_entropy,
            "test_cross_entropy_bits": self.bits,
            "test_cross_entropy_ci95": None if self.ce_interval is None else [self.ce_interval.low, self.ce_interval.high],
            "test_perplexity": self.perplexity,
            "test_perplexity_ci95": None if ppl is None else [ppl.low, ppl.high],
            "test_accuracy": self.accuracy,
            "test_top5_accuracy": self.top5_accuracy,
            "gain_over_unigram_nats": None if self.gain is None else self.gain.point,
            "gain_over_unigram_ci95": None if self.gain is None else [self.gain.low, self.gain.high],
            "epochs": self.epochs,
            "train_seconds": self.train_seconds,
            "mean_postselection": self.postselection,
            "notes": self.notes,
        }


# ----------------------------------------------------------------------------------------- bootstrap


def bootstrap_replicates(
    values: Sequence[float] | np.ndarray, sources: Sequence[str], n_boot: int, seed: int
) -> np.ndarray:
    """Window-weighted means of `values` over `n_boot` resamples of the sources (with replacement,
    each drawn source bringing all its windows)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) != len(sources):
        raise ValueError(f"{len(values)} values for {len(sources)} sources")
    if len(values) == 0:
        raise ValueError("no windows to resample")
    if n_boot < 1:
        raise ValueError("n_boot must be at least 1")
    _, inverse = np.unique(np.asarray(sources, dtype=object).astype(str), return_inverse=True)
    sums = np.bincount(inverse, weights=values)
    counts = np.bincount(inverse).astype(np.float64)
    n_sources = len(sums)
    rng = np.random.default_rng(seed)
    uniform = np.full(n_sources, 1.0 / n_sources)
    out = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, _BLOCK):
        size = min(_BLOCK, n_boot - start)
        draws = rng.multinomial(n_sources, uniform, size=size).astype(np.float64)
        out[start : start + size] = (draws @ sums) / (draws @ counts)
    return out


def bootstrap_mean(
    values: Sequence[float] | np.ndarray, sources: Sequence[str], n_boot: int = 1000, seed: int = 0, level: float = LEVEL
) -> Interval:
    """The mean of `values` and its percentile bootstrap interval, resampling by source."""
    reps = bootstrap_replicates(values, sources, n_boot, seed)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(reps, [tail, 1.0 - tail])
    return Interval(float(np.mean(np.asarray(values, dtype=np.float64))), float(low), float(high))


# ------------------------------------------------------------------------------------ reading runs


def _role(stage: str, metrics: dict[str, Any] | None, folder: Path) -> str:
    lowered = stage.lower()
    for keyword, role in _ROLE_KEYWORDS:
        if keyword in lowered:
            return role
    if (folder / PREDICTIONS_FILE).is_file() or isinstance((metrics or {}).get("test"), dict):
        return "train"
    return "other"


def _read_optional(path: Path) -> dict[str, Any] | None:
    """A JSON file a stage may not have written yet (it failed or is running): None, not an error."""
    if not path.is_file():
        return None
    try:
        value = read_json(path)
    except UserError as exc:
        LOG.warning("%s", exc)
        return None
    return value if isinstance(value, dict) else None


def discover_stages(runs_dir: Path) -> list[StageRun]:
    """Every folder under `runs_dir` whose args.json names a stage, in pipeline order."""
    found: list[StageRun] = []
    for args_path in sorted(runs_dir.rglob(ARGS_FILE)):
        rel = args_path.relative_to(runs_dir)
        if any(part.startswith(".") for part in rel.parts):
            continue
        record = _read_optional(args_path)
        if not record or not isinstance(record.get("stage"), str):
            continue
        folder = args_path.parent
        metrics = _read_optional(folder / METRICS_FILE)
        found.append(
            StageRun(
                path=folder,
                stage=record["stage"],
                status=str(record.get("status") or "unknown"),
                role=_role(record["stage"], metrics, folder),
                args=record.get("args") if isinstance(record.get("args"), dict) else {},
                metrics=metrics,
                metadata=_read_optional(folder / METADATA_FILE),
                git_commit=record.get("git_commit"),
                started=str(record.get("started") or ""),
            )
        )
    found.sort(key=lambda s: (_ROLE_ORDER.index(s.role), s.started, str(s.path)))
    return found


def _get(mapping: Any, *paths: str) -> Any:
    """The first of several dotted key paths present in nested dicts (key names differ between stages)."""
    for dotted in paths:
        node = mapping
        for key in dotted.split("."):
            if not isinstance(node, dict) or key not in node:
                node = None
                break
            node = node[key]
        if node is not None:
            return node
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _resolve_path(value: Any, runs_dir: Path, stages: list[StageRun]) -> Path | None:
    """A folder named in another stage's args: as written, else relative to the runs folder, else
    the stage folder of the same name (runs may be moved or copied after they ran)."""
    if not value:
        return None
    candidate = Path(str(value))
    for path in (candidate, runs_dir / candidate):
        if path.exists():
            return path.resolve()
    for stage in stages:
        if stage.path.name == candidate.name:
            return stage.path.resolve()
    return None


def _stage_at(path: Path | None, stages: list[StageRun]) -> StageRun | None:
    if path is None:
        return None
    for stage in stages:
        if stage.path.resolve() == path:
            return stage
    return None


def _token_set_name(data_stage: StageRun | None, vocab: int | None) -> str:
    size = f" ({vocab})" if vocab else ""
    if data_stage is None:
        return f"tokens{size}"
    if data_stage.role == "quantize":
        return f"clusters{size}"
    if data_stage.role == "raw_tokens":
        k = _get(data_stage.metadata, "k") or _get(data_stage.args, "k")
        return f"raw {k}-mers{size}" if k else f"raw k-mers{size}"
    return f"{data_stage.name}{size}"


# ---------------------------------------------------------------------------------------- the table


@dataclass
class TokenSetRefs:
    """The uniform and unigram references of one token set, and the unigram's per-window NLL."""

    name: str
    data_dir: Path | None
    vocab: int | None
    unigram_nll: np.ndarray | None = None
    sources: list[str] | None = None
    unigram_accuracy: float | None = None
    unigram_top5: float | None = None
    unigram_perplexity: float | None = None


def _unigram_reference(data_dir: Path) -> tuple[np.ndarray, list[str], float, float, int]:
    """Per-window NLL of the test targets under the add-one unigram of the train targets (metrics.py's
    definition, the one the trainers' reference perplexity uses), the test sources, and the
    unigram's accuracy and top-5 accuracy."""
    import torch

    from .formats.tokens import load_token_dataset
    from .metrics import unigram_log_probs

    data = load_token_dataset(data_dir, splits=("train", "test"))
    vocab = data["train"].vocab_size
    log_probs = unigram_log_probs(data["train"].sequences[:, -1], vocab)
    targets = data["test"].sequences[:, -1]
    nll = (-log_probs[targets]).to(torch.float64).numpy()
    ranked = torch.argsort(log_probs, descending=True)
    accuracy = float((targets == ranked[0]).double().mean())
    top5 = float(torch.isin(targets, ranked[:5]).double().mean())
    return nll, data["test"].sources, accuracy, top5, vocab


def _load_predictions(path: Path) -> tuple[np.ndarray, list[str]] | None:
    import torch

    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        LOG.warning("%s: unreadable (%s); no interval for this run", path, type(exc).__name__)
        return None
    nll = payload.get("nll") if isinstance(payload, dict) else None
    sources = payload.get("sources") if isinstance(payload, dict) else None
    if nll is None or not sources or len(sources) != len(nll):
        LOG.warning("%s: needs 'nll' and one 'sources' entry per window; no interval for this run", path)
        return None
    return np.asarray(torch.as_tensor(nll, dtype=torch.float64).numpy()), [str(s) for s in sources]


def _model_label(run: StageRun) -> str:
    name = _get(run.metrics, "model", "model_name") or _get(run.args, "model")
    if not name:
        name = "quixer" if "quixer" in run.stage.lower() else run.stage
    return str(name)


def build_rows(runs_dir: Path, stages: list[StageRun], n_boot: int, seed: int) -> tuple[list[Row], list[str]]:
    """The results table (models and references per token set) and the problems met on the way."""
    problems: list[str] = []
    refs: dict[str, TokenSetRefs] = {}
    model_rows: list[tuple[Row, str, StageRun]] = []
    for run in stages:
        if run.role != "train" or run.metrics is None:
            continue
        ce = _number(_get(run.metrics, "test.cross_entropy", "test.loss", "test.ce"))
        if ce is None:
            problems.append(f"{run.name}: metrics.json has no test cross-entropy; left out of the table")
            continue
        data_dir = _resolve_path(run.args.get("data_dir"), runs_dir, stages)
        vocab = _get(run.metrics, "vocab_size")
        vocab = int(vocab) if _number(vocab) is not None else None
        token_set = _token_set_name(_stage_at(data_dir, stages), vocab)
        ref = refs.setdefault(token_set, TokenSetRefs(token_set, data_dir, vocab))
        if ref.unigram_perplexity is None:
            ref.unigram_perplexity = _number(_get(run.metrics, "references.unigram_perplexity"))
        ppl = _number(_get(run.metrics, "test.perplexity"))
        row = Row(
            model=_model_label(run),
            token_set=token_set,
            kind="model",
            run=run.name,
            parameters=_get(run.metrics, "parameters", "parameter_count", "num_parameters"),
            cross_entropy=ce,
            perplexity=ppl if ppl is not None else math.exp(ce),
            accuracy=_number(_get(run.metrics, "test.accuracy")),
            top5_accuracy=_number(_get(run.metrics, "test.top5_accuracy", "test.top5")),
            epochs=_get(run.metrics, "epochs_run", "epochs"),
            train_seconds=_number(_get(run.metrics, "train_seconds", "training_seconds")),
            postselection=_number(
                _get(run.metrics, "mean_postselection", "postselection", "last_epoch.postselection")
            ),
        )
        if run.status != "completed":
            row.notes.append(f"status {run.status}")
        model_rows.append((row, token_set, run))

    for ref in refs.values():
        if ref.data_dir is None:
            problems.append(f"{ref.name}: token folder not found; no unigram row or gain interval")
            continue
        try:
            nll, sources, acc, top5, vocab = _unigram_reference(ref.data_dir)
        except UserError as exc:
            problems.append(f"{ref.name}: {exc}")
            continue
        ref.unigram_nll, ref.sources, ref.unigram_accuracy, ref.unigram_top5 = nll, sources, acc, top5
        ref.vocab = ref.vocab or vocab

    rows: list[Row] = []
    for ref in refs.values():
        if ref.vocab:
            rows.append(
                Row(
                    model="uniform",
                    token_set=ref.name,
                    kind="reference",
                    cross_entropy=math.log(ref.vocab),
                    perplexity=float(ref.vocab),
                    accuracy=1.0 / ref.vocab,
                    top5_accuracy=min(5, ref.vocab) / ref.vocab,
                    notes=["every token equally likely"],
                )
            )
        if ref.unigram_nll is not None:
            interval = bootstrap_mean(ref.unigram_nll, ref.sources, n_boot, seed)
            rows.append(
                Row(
                    model="unigram",
                    token_set=ref.name,
                    kind="reference",
                    cross_entropy=interval.point,
                    ce_interval=interval,
                    perplexity=math.exp(interval.point),
                    accuracy=ref.unigram_accuracy,
                    top5_accuracy=ref.unigram_top5,
                    notes=["train-split target counts, add-one smoothing"],
                )
            )
            if ref.unigram_perplexity is not None and not math.isclose(
                ref.unigram_perplexity, math.exp(interval.point), rel_tol=1e-3
            ):
                problems.append(
                    f"{ref.name}: trainers report unigram perplexity {ref.unigram_perplexity:.4g}, "
                    f"recomputed {math.exp(interval.point):.4g}"
                )
        for row, token_set, run in model_rows:
            if token_set != ref.name:
                continue
            predictions = _load_predictions(run.path / PREDICTIONS_FILE)
            if predictions is None:
                row.notes.append(f"no {PREDICTIONS_FILE}: no interval")
            else:
                nll, sources = predictions
                row.ce_interval = bootstrap_mean(nll, sources, n_boot, seed)
                if not math.isclose(row.ce_interval.point, row.cross_entropy, rel_tol=1e-3, abs_tol=1e-4):
                    problems.append(
                        f"{run.name}: {PREDICTIONS_FILE} mean NLL {row.ce_interval.point:.4f} differs from "
                        f"metrics.json test cross-entropy {row.cross_entropy:.4f}"
                    )
                if ref.unigram_nll is not None and ref.sources == sources:
                    row.gain = bootstrap_mean(ref.unigram_nll - nll, sources, n_boot, seed)
                elif ref.unigram_nll is not None:
                    row.notes.append("test windows differ from the token folder's: no gain interval")
            rows.append(row)
    return rows, problems


# ------------------------------------------------------------------------------------ formatting


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


def _fmt_interval(interval: Interval | None, digits: int = 3) -> str:
    if interval is None:
        return MISSING
    return f"[{interval.low:.{digits}f}, {interval.high:.{digits}f}]"


def _fmt_percent(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:.2f}%"


def _fmt_seconds(value: float | None) -> str:
    if value is None:
        return MISSING
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def _markdown_table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in lines]
    return "\n".join(out)


RESULT_HEADER = (
    "model",
    "token set",
    "parameters",
    "test CE (nats)",
    "95% CI",
    "CE (bits)",
    "perplexity",
    "ppl 95% CI",
    "accuracy",
    "top-5",
    "gain vs unigram (nats)",
    "gain 95% CI",
    "epochs",
    "training time",
    "post-selection",
)


def _row_cells(row: Row) -> list[str]:
    ppl = row.ppl_interval
    return [
        row.model if row.kind == "model" else f"*{row.model}*",
        row.token_set,
        _fmt(row.parameters),
        _fmt(row.cross_entropy),
        _fmt_interval(row.ce_interval),
        _fmt(row.bits),
        _fmt(row.perplexity, 2) if row.perplexity is not None else MISSING,
        _fmt_interval(ppl, 1),
        _fmt_percent(row.accuracy),
        _fmt_percent(row.top5_accuracy),
        MISSING if row.gain is None else f"{row.gain.point:+.4f}",
        _fmt_interval(row.gain),
        _fmt(row.epochs),
        _fmt_seconds(row.train_seconds),
        _fmt(row.postselection),
    ]


# ----------------------------------------------------------------------------------------- figures


def _perplexity_figure(rows: list[Row], path: Path) -> bool:
    """Bar chart of test perplexity with the transcript-bootstrap intervals; False when no row has one."""
    plotted = [r for r in rows if r.perplexity is not None]
    if not plotted:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.model}\n{r.token_set}" for r in plotted]
    heights = [r.perplexity for r in plotted]
    low_err, high_err = [], []
    for r in plotted:
        ppl = r.ppl_interval
        low_err.append(max(0.0, r.perplexity - ppl.low) if ppl else 0.0)
        high_err.append(max(0.0, ppl.high - r.perplexity) if ppl else 0.0)
    colours = ["#9e9e9e" if r.kind == "reference" else "#3b6fb6" for r in plotted]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(plotted) + 2), 4.5))
    ax.bar(range(len(plotted)), heights, color=colours, yerr=[low_err, high_err], capsize=4)
    ax.set_xticks(range(len(plotted)), labels, fontsize=8)
    ax.set_ylabel("test perplexity (lower is better)")
    ax.set_title("Test perplexity with 95% bootstrap intervals over transcripts (grey: references)")
    ax.title.set_fontsize(10)
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)
    return True


# ------------------------------------------------------------------------------------------ report


_DATASET_FIELDS = (
    ("k", ("k",)),
    ("stride (nt)", ("stride",)),
    ("window size (k-mers)", ("window_size",)),
    ("window step (k-mers)", ("window_step",)),
    ("split rule", ("split_rule", "split_by")),
    ("minimum length (nt)", ("min_length",)),
    ("skipped transcripts", ("skipped", "skips")),
)
# Counts prepare writes as a total and per split (metadata["splits"][split][key]).
_SPLIT_COUNTS = (("transcripts", "sequences"), ("genes", "genes"), ("windows", "windows"))


def _split_count_lines(*sources: dict[str, Any] | None) -> list[list[str]]:
    lines = []
    for label, key in _SPLIT_COUNTS:
        total = next((_get(s, key) for s in sources if _get(s, key) is not None), None)
        splits = next((_get(s, "splits") for s in sources if isinstance(_get(s, "splits"), dict)), {})
        parts = [f"{name} {_fmt(counts.get(key))}" for name, counts in splits.items() if isinstance(counts, dict)]
        text = _fmt(total) if isinstance(total, (int, float)) else MISSING
        lines.append([label, f"{text} ({' / '.join(parts)})" if parts else text])
    return lines


_TOKENIZER_FIELDS = (
    ("clusters", ("n_clusters", "vocab_size")),
    ("token entropy (bits)", ("token_entropy_bits", "entropy_bits", "token_entropy")),
    ("k-means inertia", ("inertia",)),
    ("window length (tokens)", ("seq_len",)),
)


def _first_role(stages: list[StageRun], role: str) -> StageRun | None:
    matches = [s for s in stages if s.role == role]
    completed = [s for s in matches if s.status == "completed"]
    return (completed or matches or [None])[0]


def is_synthetic(stages: list[StageRun]) -> bool:
    for stage in stages:
        for source in (stage.metrics, stage.metadata):
            if _get(source, "synthetic") is True:
                return True
        if stage.role == "download" and str(stage.args.get("source", "")).lower() == "synthetic":
            return True
    return False


def _data_source(stages: list[StageRun]) -> str:
    download = _first_role(stages, "download")
    prepare = _first_role(stages, "prepare")
    if download is not None:
        source = download.args.get("source") or ("NCBI RefSeq" if download.args.get("csv") else None)
        return f"{source or 'download'} (`{download.name}`)"
    if prepare is not None:
        fasta = prepare.args.get("fasta")
        return "FASTA " + _fmt(fasta if isinstance(fasta, list) else [fasta]) if fasta else f"`{prepare.name}`"
    return MISSING


def _fields_table(fields: Sequence[tuple[str, Sequence[str]]], *sources: dict[str, Any] | None) -> list[list[str]]:
    lines = []
    for label, keys in fields:
        value = None
        for source in sources:
            value = _get(source, *keys)
            if value is not None:
                break
        lines.append([label, _fmt(value)])
    return lines


def _timings_section(runs_dir: Path) -> tuple[list[str], dict[str, Any] | None]:
    timings = _read_optional(runs_dir / TIMINGS_FILE)
    if not timings:
        return [], None
    out = ["## Pipeline", ""]
    settings = timings.get("settings")
    if isinstance(settings, dict) and settings:
        out += ["Settings (top of `run_pipeline.sh`):", ""]
        out += [_markdown_table(("setting", "value"), [[str(k), _fmt(v)] for k, v in settings.items()]), ""]
    stages = timings.get("stages")
    if isinstance(stages, list) and stages:
        lines = [
            [str(s.get("stage", MISSING)), _fmt(s.get("status")), _fmt_seconds(_number(s.get("seconds")))]
            for s in stages
            if isinstance(s, dict)
        ]
        total = sum(_number(s.get("seconds")) or 0.0 for s in stages if isinstance(s, dict))
        lines.append(["total", "", _fmt_seconds(total)])
        out += ["Wall time per stage (this machine):", "", _markdown_table(("stage", "status", "wall time"), lines), ""]
    return out, timings


def make_report(runs_dir: str | os.PathLike, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Write report.md, report.json and test_perplexity.png under `runs_dir`; returns report.json's content."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise UserError(f"--runs {runs_dir}: folder not found")
    stages = discover_stages(runs_dir)
    if not stages:
        raise UserError(f"--runs {runs_dir}: no stage folders (no args.json with a 'stage') found; run a stage first")
    if n_boot < 1:
        raise UserError(f"--bootstrap {n_boot}: must be at least 1")
    synthetic = is_synthetic(stages)
    rows, problems = build_rows(runs_dir, stages, n_boot, seed)
    not_completed = [f"{s.name} ({s.stage}): {s.status}" for s in stages if s.status != "completed"]
    absent = [
        label
        for role, label in (("prepare", "prepare (dataset)"), ("quantize", "quantize (tokenizer)"), ("train", "trainers"))
        if not any(s.role == role for s in stages)
    ]
    prepare = _first_role(stages, "prepare")
    quantize = _first_role(stages, "quantize")
    encode = _first_role(stages, "encode")
    figure = _perplexity_figure(rows, runs_dir / PERPLEXITY_FIGURE)

    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    md: list[str] = ["# quixer-rna results", ""]
    if synthetic:
        md += [
            "> **SYNTHETIC DATA.** These transcripts were generated offline by `download_rna_sequences.py "
            "--source synthetic`; they are not human RNA and no number below says anything about real mRNA.",
            "",
        ]
    commit = next((s.git_commit for s in stages if s.git_commit), MISSING)
    md += [f"Runs folder `{runs_dir}`, report written {now}, code commit `{commit}`.", ""]

    md += ["## Dataset", ""]
    dataset_lines = [["source", _data_source(stages) + (" - SYNTHETIC" if synthetic else "")]]
    prepare_sources = (prepare.metadata, prepare.metrics, prepare.args) if prepare else ()
    dataset_lines += _split_count_lines(*prepare_sources) + _fields_table(_DATASET_FIELDS, *prepare_sources)
    md += [_markdown_table(("", "value"), dataset_lines), ""]

    md += ["## Tokenizer", ""]
    tokenizer_lines = _fields_table(
        _TOKENIZER_FIELDS, quantize.metadata if quantize else None, quantize.metrics if quantize else None, quantize.args if quantize else None
    )
    if encode is not None:
        tokenizer_lines += [
            ["encoder", f"`{encode.name}`"],
            *_fields_table(
                (("embedding dim", ("embedding_dim",)), ("ansatz", ("ansatz",)), ("ansatz layers", ("layers",))),
                encode.metadata,
                encode.args,
            ),
        ]
    md += [_markdown_table(("", "value"), tokenizer_lines), ""]

    md += ["## Results (test split)", ""]
    if rows:
        md += [_markdown_table(RESULT_HEADER, [_row_cells(r) for r in rows]), ""]
        md += [
            f"Cross-entropy is the mean negative log-likelihood of the last token of each test window. "
            f"Intervals are {int(LEVEL * 100)}% percentile bootstraps ({n_boot} resamples, seed {seed}) that resample "
            "whole transcripts with replacement, because windows of one transcript are correlated. The gain is the "
            "unigram's cross-entropy minus the model's on the same windows (positive: better than the unigram). "
            "The unigram counts the targets of the train split with add-one smoothing. Reference rows are in italics.",
            "",
        ]
        notes = [f"- {r.model} ({r.run}): {'; '.join(r.notes)}" for r in rows if r.kind == "model" and r.notes]
        if notes:
            md += ["Notes:", "", *notes, ""]
    else:
        md += ["No trainer has finished: no results table.", ""]
    if figure:
        md += [f"![test perplexity]({PERPLEXITY_FIGURE})", ""]

    curves = [s for s in stages if s.role == "train" and (s.path / CURVES_FILE).is_file()]
    if curves:
        md += ["## Training curves", ""]
        for run in curves:
            rel = (run.path / CURVES_FILE).relative_to(runs_dir).as_posix()
            md += [f"### {_model_label(run)} (`{run.name}`)", "", f"![training curves of {run.name}]({rel})", ""]

    timing_lines, timings = _timings_section(runs_dir)
    md += timing_lines

    md += ["## Stages", ""]
    md += [
        _markdown_table(
            ("folder", "stage", "status"),
            [[f"`{s.path.relative_to(runs_dir).as_posix()}`", s.stage, s.status] for s in stages],
        ),
        "",
    ]
    if absent or not_completed or problems:
        md += ["Missing, failed or incomplete:", ""]
        md += [f"- not found: {a}" for a in absent]
        md += [f"- not completed: {n}" for n in not_completed]
        md += [f"- {p}" for p in problems]
        md += [""]

    report = {
        "runs_dir": str(runs_dir),
        "generated": now,
        "synthetic": synthetic,
        "bootstrap": {"resamples": n_boot, "seed": seed, "level": LEVEL, "unit": "transcript"},
        "dataset": {"source": _data_source(stages), "metadata": prepare.metadata if prepare else None},
        "tokenizer": quantize.metadata if quantize else None,
        "table": [r.to_json() for r in rows],
        "stages": [{"folder": s.path.relative_to(runs_dir).as_posix(), "stage": s.stage, "status": s.status} for s in stages],
        "missing": absent,
        "not_completed": not_completed,
        "problems": problems,
        "timings": timings,
        "figures": ([PERPLEXITY_FIGURE] if figure else []) + [(s.path / CURVES_FILE).relative_to(runs_dir).as_posix() for s in curves],
    }
    atomic_write_json(runs_dir / REPORT_JSON, report)
    atomic_write_text(runs_dir / REPORT_MD, "\n".join(md))
    return report

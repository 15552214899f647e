"""FASTA -> one k-mer stream per split: the data stage of the autoregressive task.

A sequence becomes k-mers (one every `stride` nucleotides), stored once as ids in the split's k-mer stream
(quixer_rna.formats.kmer_stream); windows of `window_size` k-mers (one every `window_step` k-mers) are views of that
stream, never stored rows. A model reads the first `window_size - 1` k-mers of a window and predicts the last.

What is kept whole in one split (`--split_by`):
- gene (default): transcripts of one gene, named by --gene_map, the header, or for transcripts whose header names
  no gene, inferred from an overlapping locus or shared sequence (quixer_rna.grouping): isoforms share exons, so
  splitting below the gene puts test targets into training;
- family: transcripts sharing sequence as well (paralogs), named or not;
- transcript: each transcript alone (only to measure the leak that the others avoid);
- region: for chromosomes and genomes, each record cut into blocks of --block_size nucleotides; where consecutive
  blocks go to different splits, the first window span of the later block is left out (a guard), so no window
  and no target of one split lies next to the other's sequence.

Units are shuffled with a seeded RNG from their sorted order, then test and then val take units until they hold at
least their fraction of all windows; the rest is train. Afterwards the leak figure (quixer_rna.leak) measures how
much val and test sequence occurs in train, and warns above --leak_threshold.

Records are read in pieces (quixer_rna.fasta), each record's bases held once as one byte each, and its k-mer ids
(2 bytes per 6-mer) kept until the streams are written: memory is bounded by the largest record plus the ids.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .cli import config_record, every, nonnegative_int, open_fraction, positive_int, rate
from .errors import UserError
from .fasta import Locus, header_info, iter_fasta_pieces
from .formats import SPLITS
from .formats.kmer_stream import (
    LEAK_FILE,
    SplitCounts,
    StreamMetadata,
    StreamWriter,
    kmer_dtype,
    open_stream,
    window_layout,
    write_leak_table,
    write_sentences_export,
)
from .grouping import Member, group_transcripts, read_gene_map
from .leak import QUERY_SPLITS, leak_figure
from .progress import Every, Progress
from .runio import atomic_open, sha256_file
from .sequence import SOFT_MASKED, base_digits, kmer_ids, lowercase_bases
from .stage import stage_run

LOG = logging.getLogger(__name__)

STAGE = "prepare_autoregressive_data"
SPLITS_FILE = "splits.tsv"
SPLIT_BY = ("gene", "family", "transcript", "region")


@dataclass(frozen=True)
class PrepareConfig:
    """Everything stage 2 needs, built once from its flags (field metadata: each flag's help and type)."""

    fasta: tuple[str, ...] = field(default=(), metadata={
        "nargs": "+", "required": True, "metavar": "FILE",
        "help": "one or more FASTA files, plain or gzip; repeat the flag or list several"})
    output_dir: str = field(default="", metadata={"required": True,
                                                  "help": "folder for the k-mer streams and metadata.json"})
    k: int = field(default=6, metadata={"type": positive_int, "help": "k-mer length in nucleotides"})
    window_size: int = field(default=32, metadata={
        "type": positive_int, "help": "k-mers per window: window_size-1 of context, then the target"})
    min_length: int = field(default=200, metadata={
        "type": nonnegative_int,
        "help": "skip (and count) transcripts, and with --split_by region blocks, shorter than this many nucleotides"})
    stride: int | None = field(default=None, metadata={
        "type": positive_int,
        "help": "nucleotides between k-mer starts; default k (non-overlapping k-mers), 1 overlaps them"})
    window_step: int = field(default=1, metadata={
        "type": positive_int,
        "help": "k-mers between window starts; 1 makes every k-mer after the first window_size-1 of a transcript a "
                "target exactly once, window_size gives disjoint windows"})
    val_fraction: float = field(default=0.1, metadata={"type": open_fraction, "help": "fraction of windows for validation"})
    test_fraction: float = field(default=0.1, metadata={"type": open_fraction, "help": "fraction of windows for test"})
    split_by: str = field(default="gene", metadata={
        "choices": SPLIT_BY,
        "help": "what one split keeps whole: 'gene' (isoforms; transcripts whose header names no gene are grouped by "
                "--gene_map, overlapping locus or shared sequence), 'family' (also transcripts of different genes "
                "sharing sequence), 'transcript' (leaky: only to measure the leak), 'region' (blocks of a chromosome "
                "or genome)"})
    gene_map: str | None = field(default=None, metadata={
        "metavar": "TSV",
        "help": "table of transcript id (the FASTA header's first word, version optional) and gene, tab-separated; "
                "it names genes before the headers do; transcripts missing from it fall back to the header, locus "
                "or shared sequence (counted in metadata.json)"})
    gene_map_column: str = field(default="auto", metadata={
        "help": "the --gene_map column holding the gene: a header-row name, or 'auto' (a column named gene, "
                "gene_id, entrez_gene_id, gene_symbol, symbol or gene_name, else the second)"})
    family_min_run: int = field(default=48, metadata={
        "type": positive_int,
        "help": "shared sequence counts in identical runs of at least this many nucleotides (grouping by sequence)"})
    family_min_anchors: int = field(default=4, metadata={
        "type": positive_int,
        "help": "transcripts are grouped when they share at least this many sequence anchors (about "
                "family_min_run + 9 x (anchors - 1) shared nucleotides at the defaults): one shared repeat copy "
                "does not join two genes, shared exons do"})
    block_size: int = field(default=100_000, metadata={
        "type": positive_int,
        "help": "--split_by region: nucleotides per block; 100 kb keeps most genes (median ~24 kb in the genome) "
                "inside one block while a chromosome still gives hundreds of blocks to shuffle"})
    soft_masked: str = field(default="keep", metadata={
        "choices": SOFT_MASKED,
        "help": "lowercase (soft-masked repeat) bases: 'keep' reads them as bases, 'drop' ends a stretch at them "
                "as at N (about half of a UCSC/Ensembl genome)"})
    leak_length: int = field(default=24, metadata={
        "type": positive_int,
        "help": "the leak figure looks up val and test sequences of this many nucleotides (at most 32) in train"})
    leak_threshold: float = field(default=0.02, metadata={
        "type": rate,
        "help": "warn when more than this share of val or test leak_length-mers occurs in train (clean real "
                "splits measure about 0.4%%; isoforms split apart 17%% or more)"})
    write_sentences: bool = field(default=False, metadata={
        "help": "also write the seeds' layout, {split}/sentences.txt (one window of k-mers a line), labels.txt and "
                "sources.txt, for people who read it; no stage reads it (at full scale it is ~35x the FASTA)"})
    log_every: Every = field(default=Every(seconds=60), metadata={
        "type": every, "help": "without a terminal, log progress every N records or every Ns seconds"})
    seed: int = 0
    overwrite: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "fasta", tuple(self.fasta))
        if self.stride is None:
            object.__setattr__(self, "stride", self.k)



def window_span(k: int, stride: int, window_size: int) -> int:
    """Nucleotides one window covers."""
    return (window_size - 1) * stride + k


def clean_sequence(sequence: str) -> str:
    """Uppercase, RNA -> DNA letters: the k-mer vocabulary is over ACGT only."""
    return sequence.upper().replace("U", "T")


def kmer_runs(valid: np.ndarray) -> np.ndarray:
    """int64 [S, 2] (first index, length) of the maximal runs of valid k-mers."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], valid.astype(np.int8), [0]))))
    return np.stack((edges[::2], edges[1::2] - edges[::2]), axis=1).astype(np.int64)


@dataclass
class Unit:
    """A kept transcript, or a block of a long record: its k-mer ids (kmer dtype), runs of valid ones, windows."""

    accession: str
    header_gene: str | None
    locus: Locus | None
    length: int
    ids: np.ndarray
    runs: np.ndarray
    n_windows: int
    record: int = 0  # input record number (blocks of one record are neighbours)
    block: int = 0


@dataclass
class Collected:
    """What reading the inputs found: kept units in input order, and counts of what was not kept."""

    units: list[Unit] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=lambda: {
        "too_short": 0, "duplicate": 0, "no_windows": 0, "all_windows_non_acgt": 0, "non_acgt_windows": 0,
    })
    skipped_rows: list[tuple[str, str, int, str]] = field(default_factory=list)
    inputs: list[dict] = field(default_factory=list)
    synthetic: bool = False
    nucleotides_read: int = 0
    bases: dict[str, int] = field(default_factory=lambda: {"non_acgt": 0, "soft_masked": 0})
    longest: int = 0


def read_records(path: str, soft_masked: str) -> Iterator[tuple[str, np.ndarray, int]]:
    """(header, base digits, lowercase bases) of every record: pieces joined into one byte per base."""
    header, parts, lowercase, current = None, [], 0, -1
    for number, piece_header, piece in iter_fasta_pieces(path):
        if number != current:
            if header is not None:
                yield header, np.concatenate(parts), lowercase
            header, parts, lowercase, current = piece_header, [], 0, number
        parts.append(base_digits(piece, soft_masked))
        lowercase += lowercase_bases(piece)
    if header is not None:
        yield header, np.concatenate(parts), lowercase


def _unit(config: PrepareConfig, found: Collected, name: str, gene: str | None, locus: Locus | None,
          digits: np.ndarray, record: int = 0, block: int = 0) -> Unit | None:
    """A transcript or block with windows, or None (counted in found.skipped)."""
    shown_gene = gene or name.split(".")[0]
    if len(digits) < config.min_length:
        found.skipped["too_short"] += 1
        found.skipped_rows.append((name, shown_gene, len(digits), "too_short"))
        return None
    found.longest = max(found.longest, len(digits))
    ids, valid = kmer_ids(digits, config.k, config.stride)
    runs = kmer_runs(valid)
    layout = np.zeros((len(runs), 4), dtype=np.int64)
    layout[:, 1], layout[:, 3] = runs[:, 1], runs[:, 0]
    n_windows = int(window_layout(layout, config.window_size, config.window_step)[1].sum())
    grid = max(0, (len(ids) - config.window_size) // config.window_step + 1)
    found.skipped["non_acgt_windows"] += grid - n_windows
    if n_windows == 0:
        reason = "all_windows_non_acgt" if grid else "no_windows"
        found.skipped[reason] += 1
        found.skipped_rows.append((name, shown_gene, len(digits), reason))
        return None
    return Unit(name, gene, locus, len(digits), ids.astype(kmer_dtype(config.k)), runs, n_windows, record, block)


def collect(config: PrepareConfig) -> Collected:
    """Read every --fasta file once: each record (or block of one) becomes k-mer ids and a window count. Only
    the ids are kept (2 bytes per 6-mer), not the sequences."""
    found = Collected()
    seen: set[str] = set()
    record_number = 0
    for path in config.fasta:
        records = 0
        with Progress(0, Path(path).name, unit="record", every=config.log_every) as progress:
            for header, digits, lowercase in read_records(path, config.soft_masked):
                records += 1
                record_number += 1
                progress.update()
                info = header_info(header)
                found.synthetic = found.synthetic or "synthetic" in header.lower()
                found.nucleotides_read += len(digits)
                other = int((digits == 4).sum())
                dropped = lowercase if config.soft_masked == "drop" else 0
                found.bases["non_acgt"] += other - dropped
                found.bases["soft_masked"] += lowercase
                if info.accession in seen:
                    found.skipped["duplicate"] += 1
                    found.skipped_rows.append((info.accession, info.gene or "", len(digits), "duplicate"))
                    continue
                seen.add(info.accession)
                if config.split_by == "region":
                    for block, begin in enumerate(range(0, len(digits), config.block_size)):
                        piece = digits[begin:begin + config.block_size]
                        name = f"{info.accession}:{begin + 1}-{begin + len(piece)}"
                        unit = _unit(config, found, name, name, None, piece, record_number, block)
                        if unit is not None:
                            found.units.append(unit)
                    continue
                unit = _unit(config, found, info.accession, info.gene, info.locus, digits, record_number)
                if unit is not None:
                    found.units.append(unit)
        found.inputs.append({"path": str(path), "sha256": sha256_file(path), "records": records})
        LOG.debug("%s: %d records", path, records)
    return found


def assign_splits(
    unit_windows: dict[str, int], val_fraction: float, test_fraction: float, seed: int, unit: str = "gene"
) -> dict[str, str]:
    """Map each unit (gene, family, transcript or block) to a split, keeping units whole. Deterministic for a
    seed: the sorted units are shuffled, then test and val are filled to their fractions of all windows. A split
    with a positive fraction always gets at least one unit; train always does."""
    order = sorted(unit_windows)
    random.Random(seed).shuffle(order)
    total = sum(unit_windows.values())
    wanted = [(split, fraction) for split, fraction in (("test", test_fraction), ("val", val_fraction)) if fraction > 0]
    if len(order) < len(wanted) + 1:
        names = ", ".join(["train"] + [split for split, _ in wanted])
        hint = ("a chromosome or genome needs --split_by region" if unit in ("gene", "transcript", "family")
                else "lower --block_size")
        raise UserError(
            f"--split_by {unit}: only {len(order)} {unit}(s) with windows, too few for {names}; give more "
            f"sequences ({hint}) or set --val_fraction/--test_fraction to 0"
        )
    assignment: dict[str, str] = {}
    position = 0
    for rank, (split, fraction) in enumerate(wanted):
        held = 0
        later = len(wanted) - rank  # splits after this one that each need a unit, train included
        while position < len(order) - later and (held == 0 or held < fraction * total):
            assignment[order[position]] = split
            held += unit_windows[order[position]]
            position += 1
    for name in order[position:]:
        assignment[name] = "train"
    return assignment


def apply_guards(config: PrepareConfig, units: list[Unit], split_of: list[str]) -> int:
    """Leave out the first window span of every block whose preceding block of the same record went to another
    split (k-mers starting there are dropped); returns the bases left out."""
    guard = window_span(config.k, config.stride, config.window_size)
    first_kept = -(-guard // config.stride)
    left_out = 0
    for i in range(1, len(units)):
        before, unit = units[i - 1], units[i]
        if before.record != unit.record or before.block != unit.block - 1 or split_of[i - 1] == split_of[i]:
            continue
        runs = unit.runs.copy()
        ends = runs[:, 0] + runs[:, 1]
        runs[:, 0] = np.maximum(runs[:, 0], first_kept)
        runs[:, 1] = ends - runs[:, 0]
        unit.runs = runs[runs[:, 1] > 0]
        layout = np.zeros((len(unit.runs), 4), dtype=np.int64)
        layout[:, 1], layout[:, 3] = unit.runs[:, 1], unit.runs[:, 0]
        unit.n_windows = int(window_layout(layout, config.window_size, config.window_step)[1].sum())
        left_out += min(guard, unit.length)
    return left_out


@dataclass
class Units:
    """Every kept unit's split, its gene as written to the streams (the unit kept whole), its own gene and how the
    gene was decided."""

    split: list[str]
    group: list[str]
    gene: list[str]
    source: list[str]
    grouping: dict


def split_units(config: PrepareConfig, units: list[Unit]) -> Units:
    """Group (gene, family, transcript or block), then assign whole groups to splits."""
    if config.split_by == "region":
        names = [u.accession for u in units]
        group, gene, source, stats = names, names, ["region"] * len(units), {"groups": len(units)}
    elif config.split_by == "transcript":
        group = [u.accession for u in units]
        gene = [u.header_gene or u.accession.split(".")[0] for u in units]
        source, stats = ["transcript"] * len(units), {"groups": len(units)}
    else:
        gene_map = read_gene_map(config.gene_map, config.gene_map_column) if config.gene_map else None
        members = [Member(u.accession, u.header_gene, u.locus, u.ids, u.runs) for u in units]
        with Progress(len(members), "grouping", unit="transcript", every=config.log_every) as progress:
            grouping = group_transcripts(members, family=config.split_by == "family", gene_map=gene_map, k=config.k,
                                         stride=config.stride, min_run=config.family_min_run,
                                         min_anchors=config.family_min_anchors, progress=progress.update)
        group, gene, source, stats = grouping.group, grouping.gene, grouping.source, grouping.stats
        if gene_map is not None:
            missing = sum(s != "map" for s in source)
            if missing == len(units):
                raise UserError(f"--gene_map {config.gene_map}: names none of the {len(units)} transcripts; its first "
                                "column must hold the FASTA headers' first word (or their accession)")
            if missing:
                LOG.warning("--gene_map %s: %d of %d transcripts are not in it; they are grouped by their header, an "
                            "overlapping locus or shared sequence instead (see splits.tsv)", config.gene_map, missing,
                            len(units))
        unnamed = sum(s in ("locus", "sequence") for s in source)
        if unnamed and config.split_by == "gene":
            LOG.info("%d of %d transcripts name no gene in their header%s: grouped by overlapping locus or shared "
                     "sequence (%s)", unnamed, len(units), "" if gene_map is None else " or --gene_map", stats)
    windows: dict[str, int] = {}
    for name, unit in zip(group, units):
        windows[name] = windows.get(name, 0) + unit.n_windows
    unit_split = assign_splits(windows, config.val_fraction, config.test_fraction, config.seed, config.split_by)
    return Units([unit_split[name] for name in group], group, gene, source, stats)


def check_config(config: PrepareConfig) -> None:
    """Flag combinations that can never work, each named in a one-line error (single values are checked by their
    argparse types)."""
    if config.window_size < 2:
        raise UserError(f"--window_size {config.window_size}: must be at least 2 (context k-mers plus one target)")
    if config.val_fraction + config.test_fraction >= 1:
        raise UserError(
            f"--val_fraction {config.val_fraction} + --test_fraction {config.test_fraction}: must sum to less than 1"
        )
    if not 1 <= config.leak_length <= 32:
        raise UserError(f"--leak_length {config.leak_length}: must be between 1 and 32 nucleotides")
    if config.gene_map and config.split_by in ("transcript", "region"):
        raise UserError(f"--gene_map: has no use with --split_by {config.split_by}; drop one of them")
    kmer_dtype(config.k)
    for path in [*config.fasta, *([config.gene_map] if config.gene_map else [])]:
        if not Path(path).is_file():
            flag = "--gene_map" if path == config.gene_map else "--fasta"
            raise UserError(f"{flag} {path}: file not found")


def _no_window_error(config: PrepareConfig, found: Collected) -> UserError:
    kept = found.skipped["no_windows"] + found.skipped["all_windows_non_acgt"]
    if kept == 0:
        return UserError(
            f"--min_length {config.min_length}: no transcript in --fasta is that long; lower --min_length"
        )
    if found.skipped["all_windows_non_acgt"] == kept:
        masked = " or soft-masked (--soft_masked drop)" if config.soft_masked == "drop" else ""
        return UserError(f"--fasta: every window of every sequence holds a letter other than A, C, G, T or U{masked}")
    span = window_span(config.k, config.stride, config.window_size)
    return UserError(
        f"--k {config.k} --stride {config.stride} --window_size {config.window_size}: a window spans {span} nt but the "
        f"longest transcript has {found.longest} nt, so there is no window; lower --window_size or --stride"
    )


def _write_splits_table(path: Path, units: list[Unit], split: Units, found: Collected) -> None:
    with atomic_open(path) as handle:
        handle.write("accession\tgene\tgroup\tgene_source\tsplit\twindows\tlength\n")
        for i, unit in enumerate(units):
            handle.write(f"{unit.accession}\t{split.gene[i]}\t{split.group[i]}\t{split.source[i]}\t{split.split[i]}\t"
                         f"{unit.n_windows}\t{unit.length}\n")
        for accession, gene, length, reason in found.skipped_rows:
            handle.write(f"{accession}\t{gene}\t-\t-\tskipped:{reason}\t0\t{length}\n")


def write_split(output_dir: Path, split: str, members: list[tuple[Unit, str]], k: int) -> dict[str, Any]:
    """The k-mer stream of one split: every member's ids, run by run, under its group's name."""
    writer = StreamWriter(output_dir, split, k)
    try:
        for unit, group in members:
            writer.add_runs(unit.accession, group, unit.length, unit.ids, unit.runs)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def _leak(config: PrepareConfig, output_dir: Path, metadata: StreamMetadata) -> dict[str, Any]:
    """The leak figure of val and test against train, its table (leak.tsv) and one warning line above the threshold."""
    rule = {"length": config.leak_length, "threshold": config.leak_threshold,
            "positions": "every k-mer start of val and test, against every position of train"}
    if config.stride > config.k:
        return {**rule, "computed": False, "reason": f"--stride {config.stride} > --k {config.k}: the k-mers leave gaps"}
    streams = {split: open_stream(output_dir, split, metadata) for split in SPLITS}
    with Progress(len(streams["train"].segments), "leak figure", unit="stretch", every=config.log_every) as progress:
        figure, sampled = leak_figure(streams["train"], {s: streams[s] for s in QUERY_SPLITS}, config.leak_length,
                                      config.seed, progress.update)
    write_leak_table(output_dir, {s: (streams[s].transcripts, figure[s]) for s in QUERY_SPLITS})
    summary = {**rule, "computed": True, "sampled": sampled, "file": LEAK_FILE,
               **{s: figure[s].summary() for s in QUERY_SPLITS}}
    worst = max(QUERY_SPLITS, key=lambda s: figure[s].share)
    summary["above_threshold"] = figure[worst].share > config.leak_threshold
    if summary["above_threshold"]:
        LOG.warning("leak: %.1f%% of %s %d-mers (%s %.1f%%) occur in train, above --leak_threshold %.0f%%: %s",
                    100 * figure[worst].share, worst, config.leak_length,
                    "val" if worst == "test" else "test", 100 * figure["val" if worst == "test" else "test"].share,
                    100 * config.leak_threshold, _leak_advice(config, metadata))
    return summary


def _leak_advice(config: PrepareConfig, metadata: StreamMetadata) -> str:
    if config.split_by == "region":
        if metadata.soft_masked_bases == 0:
            return ("repeats shared across blocks, and this FASTA marks none (no lowercase): a soft-masked genome "
                    "(UCSC's, download_rna_sequences.py --source ucsc) with --soft_masked drop leaves them out")
        return "repeats shared across blocks; --soft_masked drop leaves the soft-masked (lowercase) ones out"
    if config.split_by == "transcript":
        return "isoforms sit on both sides; use --split_by gene"
    total = metadata.gene_sources["total"]
    if config.split_by == "gene" and total.get("header", 0) + total.get("map", 0) < metadata.sequences:
        return "transcripts without gene names share sequence; give --gene_map or use --split_by family"
    return "genes of one family (paralogs) share sequence; use --split_by family"


def run_prepare(config: PrepareConfig) -> int:
    """The stage: check flags, read FASTA, group and split, write the streams, the leak figure, metadata and
    splits.tsv."""
    begin = time.perf_counter()
    check_config(config)
    if config.stride < config.k:
        LOG.warning(
            "--stride %d < --k %d: consecutive k-mers share %d bases, so a target has only %d possible values "
            "given its context; judge models against the n-gram reference", config.stride, config.k,
            config.k - config.stride, 4 ** config.stride,
        )
    with stage_run(config.output_dir, STAGE, config_record(config), role="prepare", overwrite=config.overwrite) as run:
        output_dir = run.output_dir
        phases: dict[str, float] = {}
        mark = time.perf_counter()
        found = collect(config)
        if not found.units:
            raise _no_window_error(config, found)
        phases["read"], mark = time.perf_counter() - mark, time.perf_counter()
        split = split_units(config, found.units)
        guard_bases = apply_guards(config, found.units, split.split) if config.split_by == "region" else 0
        phases["group_and_split"], mark = time.perf_counter() - mark, time.perf_counter()

        per_split: dict[str, SplitCounts] = {}
        groups_in: dict[str, set[str]] = {}
        sources: dict[str, dict[str, int]] = {"total": {}}
        for name in SPLITS:
            chosen = [i for i, s in enumerate(split.split) if s == name]
            if not chosen:
                LOG.warning("split %s is empty (its fraction is 0)", name)
            written = write_split(output_dir, name, [(found.units[i], split.group[i]) for i in chosen], config.k)
            groups_in[name] = {split.group[i] for i in chosen}
            sources[name] = {s: sum(split.source[i] == s for i in chosen) for s in sorted(set(split.source))}
            for s, count in sources[name].items():
                sources["total"][s] = sources["total"].get(s, 0) + count
            per_split[name] = SplitCounts(
                sequences=len(chosen),
                transcripts=written["transcripts"],
                genes=len(groups_in[name]),
                windows=sum(found.units[i].n_windows for i in chosen),
                nucleotides=sum(found.units[i].length for i in chosen),
                kmers=written["kmers"],
                segments=written["segments"],
                sha256=written["sha256"],
            )
        shared_groups = len((groups_in["train"] & groups_in["val"]) | (groups_in["train"] & groups_in["test"])
                            | (groups_in["val"] & groups_in["test"]))
        _write_splits_table(output_dir / SPLITS_FILE, found.units, split, found)
        del found.units[:]  # the ids are on disk now; the leak figure reads them from there
        phases["write"], mark = time.perf_counter() - mark, time.perf_counter()

        total_windows = sum(s.windows for s in per_split.values())
        region = config.split_by == "region"
        metadata = StreamMetadata(
            task="autoregressive",
            k=config.k,
            kmer_dtype=str(kmer_dtype(config.k)),
            stride=config.stride,
            window_size=config.window_size,
            window_step=config.window_step,
            window_span_nt=window_span(config.k, config.stride, config.window_size),
            min_length=config.min_length,
            split_by=config.split_by,
            split_rule=_split_rule(config),
            val_fraction=config.val_fraction,
            test_fraction=config.test_fraction,
            seed=config.seed,
            synthetic=found.synthetic,
            inputs=found.inputs,
            total_nucleotides=found.nucleotides_read,
            soft_masked=config.soft_masked,
            soft_masked_bases=found.bases["soft_masked"],
            bases_left_out={"non_acgt": found.bases["non_acgt"], "guard": guard_bases,
                            "soft_masked": found.bases["soft_masked"] if config.soft_masked == "drop" else 0},
            sequences=sum(s.sequences for s in per_split.values()),
            genes=sum(s.genes for s in per_split.values()),
            gene_sources=sources,
            grouping={**split.grouping, "gene_map": config.gene_map, "family_min_run": config.family_min_run,
                      "family_min_anchors": config.family_min_anchors}
                     if config.split_by in ("gene", "family") else split.grouping,
            windows=total_windows,
            splits=per_split,
            window_fractions={s: per_split[s].windows / total_windows for s in SPLITS},
            genes_in_more_than_one_split=shared_groups,
            skipped=dict(found.skipped),
            block_size=config.block_size if region else None,
            guard_nt=window_span(config.k, config.stride, config.window_size) if region else None,
        )
        metadata = dataclasses.replace(metadata, leak=_leak(config, output_dir, metadata))
        phases["leak"] = time.perf_counter() - mark
        # metadata.json last: a folder that has it holds a whole stream.
        metadata.write(output_dir)
        if config.write_sentences:
            for name in SPLITS:
                write_sentences_export(open_stream(output_dir, name, metadata), output_dir)
        seconds = time.perf_counter() - begin
        run.finish({
            "sequences": metadata.sequences,
            "genes": metadata.genes,
            "windows": total_windows,
            "splits": {s: {k: v for k, v in dataclasses.asdict(per_split[s]).items() if k != "sha256"} for s in SPLITS},
            "skipped": metadata.skipped,
            "gene_sources": sources,
            "leak": {s: metadata.leak.get(s, {}).get("share") for s in QUERY_SPLITS},
            "synthetic": found.synthetic,
            "bytes_on_disk": sum((output_dir / s / f).stat().st_size for s in SPLITS for f in per_split[s].sha256),
            "seconds": seconds,
            "seconds_by_phase": phases,
        })
    leak = metadata.leak
    LOG.info(
        "%d %s (%d %s) -> windows train %d, val %d, test %d; skipped %s; test %d-mers in train %s; %.1f s%s",
        metadata.sequences, "blocks" if config.split_by == "region" else "transcripts", metadata.genes,
        {"region": "blocks", "family": "families"}.get(config.split_by, "genes" if config.split_by == "gene"
                                                       else "transcripts"),
        per_split["train"].windows, per_split["val"].windows, per_split["test"].windows, found.skipped,
        config.leak_length, f"{100 * leak['test']['share']:.2f}%" if leak["computed"] else "not measured",
        seconds, " [SYNTHETIC data]" if found.synthetic else "",
    )
    return 0


def _split_rule(config: PrepareConfig) -> str:
    unit = {"gene": "genes (or groups sharing locus or sequence where no gene is named)",
            "family": "families (genes sharing sequence)", "transcript": "transcripts",
            "region": f"blocks of {config.block_size} nt, a guard of one window span where the split changes"}
    return f"whole {unit[config.split_by]}, seeded shuffle, test then val filled to their fraction of windows"

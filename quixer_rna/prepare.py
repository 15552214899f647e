"""FASTA -> one k-mer stream per split, split by gene: the data stage of the autoregressive task.

A transcript becomes k-mers (one every `stride` nucleotides), stored once as ids in the split's k-mer stream
(quixer_rna.formats.kmer_stream); windows of `window_size` k-mers (one every `window_step` k-mers) are views
of that stream, never stored rows. A model reads the first `window_size - 1` k-mers of a window and predicts
the last. With `window_step` 1 every k-mer after the first `window_size - 1` of a transcript is a target
exactly once, like the Quixer paper's windows over words.

Splits keep whole genes (or whole transcripts with --split_by transcript): isoforms of one gene share
exons, so splitting below the gene would put test targets into training. Genes are shuffled with a
seeded RNG from their sorted order, then test and then val take genes until they hold at least their
fraction of all WINDOWS (the numbers users read in the counts); the rest is train. A split overshoots
its fraction by at most one gene.
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import UserError
from .fasta import iter_fasta, parse_header
from .formats import SPLITS
from .formats.kmer_stream import (
    FORMAT,
    METADATA_FILE,
    VERSION,
    StreamWriter,
    kmer_dtype,
    open_stream,
    window_layout,
    write_sentences_export,
)
from .progress import Progress
from .runio import atomic_open, atomic_write_json, sha256_file
from .stage import stage_run

LOG = logging.getLogger(__name__)

STAGE = "prepare_autoregressive_data"
SPLITS_FILE = "splits.tsv"
SPLIT_BY = ("gene", "transcript")

# Base -> digit (A=0, C=1, G=2, T=3); any other letter -> 4, which spoils the k-mers holding it.
_DIGITS = np.full(256, 4, dtype=np.int64)
for _digit, _base in enumerate(b"ACGT"):
    _DIGITS[_base] = _digit


def clean_sequence(sequence: str) -> str:
    """Uppercase, RNA -> DNA letters: the k-mer vocabulary is over ACGT only."""
    return sequence.upper().replace("U", "T")


def window_span(k: int, stride: int, window_size: int) -> int:
    """Nucleotides one window covers."""
    return (window_size - 1) * stride + k


def kmer_ids(sequence: str, k: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """The ids (quixer_rna.kmers numbering) of the k-mers starting every `stride` nucleotides (a tail
    shorter than k is dropped), and whether each is over A, C, G, T only."""
    digits = _DIGITS[np.frombuffer(sequence.encode("ascii", errors="replace"), dtype=np.uint8)]
    count = max(0, (len(digits) - k) // stride + 1)
    starts = np.arange(count, dtype=np.int64) * stride
    bad = np.concatenate(([0], np.cumsum(digits == 4)))
    valid = (bad[starts + k] - bad[starts]) == 0
    ids = np.zeros(count, dtype=np.int64)
    clipped = np.minimum(digits, 3)
    for offset in range(k):
        ids = ids * 4 + clipped[starts + offset]
    return ids, valid


def stretches(valid: np.ndarray) -> np.ndarray:
    """int64 [S, 4] rows (offset, length, transcript 0, first) of the maximal runs of valid k-mers."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], valid.astype(np.int8), [0]))))
    first, end = edges[::2], edges[1::2]
    rows = np.zeros((len(first), 4), dtype=np.int64)
    rows[:, 0], rows[:, 1], rows[:, 3] = first, end - first, first
    return rows


@dataclass
class Transcript:
    """One kept transcript: its k-mer ids (and which are valid, None when all are) and its window count."""

    accession: str
    gene: str
    length: int
    ids: np.ndarray
    valid: np.ndarray | None
    n_windows: int


def assign_splits(
    unit_windows: dict[str, int], val_fraction: float, test_fraction: float, seed: int, unit: str = "gene"
) -> dict[str, str]:
    """Map each unit (gene or transcript) to a split, keeping units whole. Deterministic for a seed:
    the sorted units are shuffled, then test and val are filled to their fractions of all windows.
    A split with a positive fraction always gets at least one unit; train always does."""
    order = sorted(unit_windows)
    random.Random(seed).shuffle(order)
    total = sum(unit_windows.values())
    wanted = [(split, fraction) for split, fraction in (("test", test_fraction), ("val", val_fraction)) if fraction > 0]
    if len(order) < len(wanted) + 1:
        names = ", ".join(["train"] + [split for split, _ in wanted])
        raise UserError(
            f"--split_by {unit}: only {len(order)} {unit}(s) with windows, too few for {names}; "
            f"give more transcripts or set --val_fraction/--test_fraction to 0"
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


@dataclass
class Collected:
    """What reading the inputs found: kept transcripts in input order, and the counts of what was not kept."""

    transcripts: list[Transcript] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=lambda: {
        "too_short": 0, "duplicate": 0, "no_windows": 0, "all_windows_non_acgt": 0, "non_acgt_windows": 0,
    })
    skipped_rows: list[tuple[str, str, int, str]] = field(default_factory=list)
    inputs: list[dict] = field(default_factory=list)
    synthetic: bool = False
    nucleotides_read: int = 0
    longest: int = 0


def collect_transcripts(args: argparse.Namespace) -> Collected:
    """Read every --fasta file once: clean each record, turn it into k-mer ids and count its windows.
    Only the ids are kept (2 bytes per 6-mer), not the sequences."""
    found = Collected()
    seen: set[str] = set()
    dtype = kmer_dtype(args.k)
    for path in args.fasta:
        records = 0
        with Progress(0, Path(path).name, unit="record", every=args.log_every) as progress:
            for record in iter_fasta(path):
                records += 1
                progress.update()
                accession, gene = parse_header(record.header)
                found.synthetic = found.synthetic or "synthetic" in record.header.lower()
                sequence = clean_sequence(record.sequence)
                found.nucleotides_read += len(sequence)
                if accession in seen:
                    found.skipped["duplicate"] += 1
                    found.skipped_rows.append((accession, gene, len(sequence), "duplicate"))
                    continue
                seen.add(accession)
                if len(sequence) < args.min_length:
                    found.skipped["too_short"] += 1
                    found.skipped_rows.append((accession, gene, len(sequence), "too_short"))
                    continue
                found.longest = max(found.longest, len(sequence))
                ids, valid = kmer_ids(sequence, args.k, args.stride)
                _, counts = window_layout(stretches(valid), args.window_size, args.window_step)
                n_windows = int(counts.sum())
                grid = max(0, (len(ids) - args.window_size) // args.window_step + 1)
                found.skipped["non_acgt_windows"] += grid - n_windows
                if n_windows == 0:
                    reason = "all_windows_non_acgt" if grid else "no_windows"
                    found.skipped[reason] += 1
                    found.skipped_rows.append((accession, gene, len(sequence), reason))
                    continue
                found.transcripts.append(Transcript(accession, gene, len(sequence), ids.astype(dtype),
                                                    None if valid.all() else valid, n_windows))
        found.inputs.append({"path": str(path), "sha256": sha256_file(path), "records": records})
        LOG.debug("%s: %d records", path, records)
    return found


def check_args(args: argparse.Namespace) -> None:
    """Flag combinations that can never work, each named in a one-line error (single values are checked
    by their argparse types)."""
    if args.window_size < 2:
        raise UserError(f"--window_size {args.window_size}: must be at least 2 (context k-mers plus one target)")
    if args.val_fraction + args.test_fraction >= 1:
        raise UserError(
            f"--val_fraction {args.val_fraction} + --test_fraction {args.test_fraction}: must sum to less than 1"
        )
    kmer_dtype(args.k)
    for path in args.fasta:
        if not Path(path).is_file():
            raise UserError(f"--fasta {path}: file not found")


def _no_window_error(args: argparse.Namespace, found: Collected) -> UserError:
    kept = found.skipped["no_windows"] + found.skipped["all_windows_non_acgt"]
    if kept == 0:
        return UserError(
            f"--min_length {args.min_length}: no transcript in --fasta is that long; lower --min_length"
        )
    if found.skipped["all_windows_non_acgt"] == kept:
        return UserError("--fasta: every window of every transcript holds a letter other than A, C, G, T or U")
    span = window_span(args.k, args.stride, args.window_size)
    return UserError(
        f"--k {args.k} --stride {args.stride} --window_size {args.window_size}: a window spans {span} nt but the "
        f"longest transcript has {found.longest} nt, so there is no window; lower --window_size or --stride"
    )


def _write_splits_table(path: Path, transcripts: list[Transcript], split_of: dict[str, str], found: Collected) -> None:
    with atomic_open(path) as handle:
        handle.write("accession\tgene\tsplit\twindows\tlength\n")
        for t in transcripts:
            handle.write(f"{t.accession}\t{t.gene}\t{split_of[t.accession]}\t{t.n_windows}\t{t.length}\n")
        for accession, gene, length, reason in found.skipped_rows:
            handle.write(f"{accession}\t{gene}\tskipped:{reason}\t0\t{length}\n")


def write_split(output_dir: Path, split: str, members: list[Transcript], k: int) -> dict:
    """The k-mer stream of one split: every member's ids, stretch by stretch."""
    writer = StreamWriter(output_dir, split, k)
    try:
        for t in members:
            valid = np.ones(len(t.ids), dtype=bool) if t.valid is None else t.valid
            writer.add(t.accession, t.gene, t.length, t.ids, valid)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def run_prepare(args: argparse.Namespace) -> int:
    """The stage: check flags, read FASTA, split by gene, write the streams, metadata and splits.tsv."""
    begin = time.perf_counter()
    check_args(args)
    if args.stride < args.k:
        LOG.warning(
            "--stride %d < --k %d: consecutive k-mers share %d bases, so a target has only %d possible values "
            "given its context; judge models against the n-gram reference", args.stride, args.k,
            args.k - args.stride, 4 ** args.stride,
        )
    with stage_run(args.output_dir, STAGE, vars(args), role="prepare", overwrite=args.overwrite) as run:
        output_dir = run.output_dir
        found = collect_transcripts(args)
        if not found.transcripts:
            raise _no_window_error(args, found)
        unit_of = {t.accession: (t.gene if args.split_by == "gene" else t.accession) for t in found.transcripts}
        unit_windows: dict[str, int] = {}
        for t in found.transcripts:
            unit_windows[unit_of[t.accession]] = unit_windows.get(unit_of[t.accession], 0) + t.n_windows
        unit_split = assign_splits(unit_windows, args.val_fraction, args.test_fraction, args.seed, args.split_by)
        split_of = {accession: unit_split[unit] for accession, unit in unit_of.items()}

        per_split: dict[str, dict] = {}
        genes_in: dict[str, set[str]] = {}
        for split in SPLITS:
            members = [t for t in found.transcripts if split_of[t.accession] == split]
            if not members:
                LOG.warning("split %s is empty (its fraction is 0)", split)
            written = write_split(output_dir, split, members, args.k)
            genes_in[split] = {t.gene for t in members}
            per_split[split] = {
                "sequences": len(members),
                "transcripts": written["transcripts"],
                "genes": len(genes_in[split]),
                "windows": sum(t.n_windows for t in members),
                "nucleotides": sum(t.length for t in members),
                "kmers": written["kmers"],
                "segments": written["segments"],
                "sha256": written["sha256"],
            }
        shared_genes = len((genes_in["train"] & genes_in["val"]) | (genes_in["train"] & genes_in["test"])
                           | (genes_in["val"] & genes_in["test"]))
        _write_splits_table(output_dir / SPLITS_FILE, found.transcripts, split_of, found)

        total_windows = sum(s["windows"] for s in per_split.values())
        metadata = {
            "format": FORMAT,
            "version": VERSION,
            "task": "autoregressive",
            "k": args.k,
            "kmer_dtype": str(kmer_dtype(args.k)),
            "stride": args.stride,
            "window_size": args.window_size,
            "window_step": args.window_step,
            "window_span_nt": window_span(args.k, args.stride, args.window_size),
            "min_length": args.min_length,
            "split_by": args.split_by,
            "split_rule": f"whole {args.split_by}s, seeded shuffle, test then val filled to their fraction of windows",
            "val_fraction": args.val_fraction,
            "test_fraction": args.test_fraction,
            "seed": args.seed,
            "synthetic": found.synthetic,
            "inputs": found.inputs,
            "total_nucleotides": found.nucleotides_read,
            "sequences": len(found.transcripts),
            "genes": len({t.gene for t in found.transcripts}),
            "windows": total_windows,
            "splits": per_split,
            "window_fractions": {s: per_split[s]["windows"] / total_windows for s in SPLITS},
            "genes_in_more_than_one_split": shared_genes,
            "skipped": dict(found.skipped),
        }
        # metadata.json last: a folder that has it holds a whole stream.
        atomic_write_json(output_dir / METADATA_FILE, metadata)
        if args.write_sentences:
            for split in SPLITS:
                write_sentences_export(open_stream(output_dir, split, metadata), output_dir)
        seconds = time.perf_counter() - begin
        run.finish({
            "sequences": metadata["sequences"],
            "genes": metadata["genes"],
            "windows": total_windows,
            "splits": {s: {k: v for k, v in per_split[s].items() if k != "sha256"} for s in SPLITS},
            "skipped": metadata["skipped"],
            "synthetic": found.synthetic,
            "bytes_on_disk": sum((output_dir / s / f).stat().st_size for s in SPLITS for f in per_split[s]["sha256"]),
            "seconds": seconds,
        })
    LOG.info(
        "%d transcripts (%d genes) -> windows train %d, val %d, test %d; skipped %s; %.1f s%s",
        metadata["sequences"], metadata["genes"], per_split["train"]["windows"], per_split["val"]["windows"],
        per_split["test"]["windows"], found.skipped, seconds, " [SYNTHETIC data]" if found.synthetic else "",
    )
    return 0

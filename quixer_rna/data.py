"""FASTA -> k-mer windows split by gene: the data stage of the autoregressive task.

A transcript becomes k-mers (one every `stride` nucleotides), and the k-mers become windows of
`window_size` (one every `window_step` k-mers); a model reads the first `window_size - 1` k-mers of a
window and predicts the last. With `window_step` 1 every k-mer after the first `window_size - 1` of a
transcript is a target exactly once, like the Quixer paper's windows over words.

Splits keep whole genes (or whole transcripts with --split_by transcript): isoforms of one gene share
exons, so splitting below the gene would put test targets into training. Genes are shuffled with a
seeded RNG from their sorted order, then test and then val take genes until they hold at least their
fraction of all WINDOWS (the numbers users read in the counts); the rest is train. A split overshoots
its fraction by at most one gene.
"""

from __future__ import annotations

import argparse
import bisect
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from tqdm import tqdm

from .errors import UserError
from .fasta import iter_fasta, parse_header
from .formats import SPLITS
from .formats.sentences import METADATA_FILE, write_sentence_split
from .runio import RunRecord, atomic_open, atomic_write_json, prepare_output_dir, sha256_file

LOG = logging.getLogger(__name__)

STAGE = "prepare_autoregressive_data"
SPLITS_FILE = "splits.tsv"
SPLIT_BY = ("gene", "transcript")

_ACGT = np.zeros(256, dtype=bool)
for _base in b"ACGT":
    _ACGT[_base] = True


def clean_sequence(sequence: str) -> str:
    """Uppercase, RNA -> DNA letters: the k-mer vocabulary is over ACGT only."""
    return sequence.upper().replace("U", "T")


def window_span(k: int, stride: int, window_size: int) -> int:
    """Nucleotides one window covers."""
    return (window_size - 1) * stride + k


def extract_kmers(sequence: str, k: int, stride: int) -> list[str]:
    """The k-mers starting every `stride` nucleotides; a tail shorter than k is dropped."""
    return [sequence[i:i + k] for i in range(0, len(sequence) - k + 1, stride)]


def valid_window_starts(
    sequence: str, k: int, stride: int, window_size: int, window_step: int
) -> tuple[np.ndarray, int]:
    """K-mer indices (int32: millions per data set) where a window starts whose k-mers are all ACGT,
    and how many windows were dropped because one of their k-mers holds another letter (an N spoils
    only the windows it is in)."""
    codes = np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)
    n_kmers = max(0, (len(codes) - k) // stride + 1)
    if n_kmers < window_size:
        return np.zeros(0, dtype=np.int32), 0
    bad_prefix = np.concatenate(([0], np.cumsum(~_ACGT[codes])))
    kmer_starts = np.arange(n_kmers, dtype=np.int64) * stride
    kmer_bad = (bad_prefix[kmer_starts + k] - bad_prefix[kmer_starts]) > 0
    kmer_bad_prefix = np.concatenate(([0], np.cumsum(kmer_bad)))
    starts = np.arange(0, n_kmers - window_size + 1, window_step, dtype=np.int64)
    window_bad = (kmer_bad_prefix[starts + window_size] - kmer_bad_prefix[starts]) > 0
    return starts[~window_bad].astype(np.int32), int(window_bad.sum())


@dataclass
class Transcript:
    """One kept transcript and where its valid windows start (k-mer indices)."""

    accession: str
    gene: str
    sequence: str
    starts: np.ndarray

    @property
    def n_windows(self) -> int:
        return len(self.starts)


@dataclass
class SplitWindows(Sequence[list[str]]):
    """The windows of one split, made on demand: with stride 1 and step 1 a real data set has
    millions of windows, too many to hold as lists of k-mers."""

    transcripts: list[Transcript]
    k: int
    stride: int
    window_size: int
    desc: str = "windows"
    _offsets: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._offsets = [0]
        for transcript in self.transcripts:
            self._offsets.append(self._offsets[-1] + transcript.n_windows)

    def __len__(self) -> int:
        return self._offsets[-1]

    def __getitem__(self, index: int) -> list[str]:  # type: ignore[override]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        which = bisect.bisect_right(self._offsets, index) - 1
        transcript = self.transcripts[which]
        start = int(transcript.starts[index - self._offsets[which]]) * self.stride
        return extract_kmers(transcript.sequence[start:start + window_span(self.k, self.stride, self.window_size)],
                             self.k, self.stride)

    def __iter__(self) -> Iterator[list[str]]:
        with tqdm(total=len(self), desc=self.desc, unit="window", unit_scale=True, leave=False, disable=None) as bar:
            for transcript in self.transcripts:
                kmers = extract_kmers(transcript.sequence, self.k, self.stride)
                size = self.window_size
                for start in transcript.starts.tolist():
                    yield kmers[start:start + size]
                bar.update(transcript.n_windows)

    def sources(self) -> list[str]:
        return [t.accession for t in self.transcripts for _ in range(t.n_windows)]


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
    """Read every --fasta file once, clean each record and find its valid windows."""
    found = Collected()
    seen: set[str] = set()
    for path in args.fasta:
        records = 0
        for record in tqdm(iter_fasta(path), desc=Path(path).name, unit="seq", leave=False, disable=None):
            records += 1
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
            starts, non_acgt = valid_window_starts(sequence, args.k, args.stride, args.window_size, args.window_step)
            found.skipped["non_acgt_windows"] += non_acgt
            if len(starts) == 0:
                reason = "all_windows_non_acgt" if non_acgt else "no_windows"
                found.skipped[reason] += 1
                found.skipped_rows.append((accession, gene, len(sequence), reason))
                continue
            found.transcripts.append(Transcript(accession, gene, sequence, starts))
        found.inputs.append({"path": str(path), "sha256": sha256_file(path), "records": records})
        LOG.debug("%s: %d records", path, records)
    return found


def check_args(args: argparse.Namespace) -> None:
    """Flag values that can never work, each named in a one-line error."""
    for flag in ("k", "stride", "window_step"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag} {getattr(args, flag)}: must be at least 1")
    if args.window_size < 2:
        raise UserError(f"--window_size {args.window_size}: must be at least 2 (context k-mers plus one target)")
    if args.min_length < 0:
        raise UserError(f"--min_length {args.min_length}: must be 0 or more nucleotides")
    for flag in ("val_fraction", "test_fraction"):
        value = getattr(args, flag)
        if not 0 <= value < 1:
            raise UserError(f"--{flag} {value}: must be in [0, 1)")
    if args.val_fraction + args.test_fraction >= 1:
        raise UserError(
            f"--val_fraction {args.val_fraction} + --test_fraction {args.test_fraction}: must sum to less than 1"
        )
    if args.split_by not in SPLIT_BY:
        raise UserError(f"--split_by {args.split_by}: expected one of {', '.join(SPLIT_BY)}")
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
            handle.write(f"{t.accession}\t{t.gene}\t{split_of[t.accession]}\t{t.n_windows}\t{len(t.sequence)}\n")
        for accession, gene, length, reason in found.skipped_rows:
            handle.write(f"{accession}\t{gene}\tskipped:{reason}\t0\t{length}\n")


def run_prepare(args: argparse.Namespace) -> int:
    """The stage: check flags, read FASTA, split by gene, write sentences, metadata and splits.tsv."""
    begin = time.perf_counter()
    check_args(args)
    if args.stride < args.k:
        LOG.warning(
            "--stride %d < --k %d: consecutive k-mers share %d bases, so a target has only %d possible values "
            "given its context; judge models against the n-gram reference", args.stride, args.k,
            args.k - args.stride, 4 ** args.stride,
        )
    output_dir = prepare_output_dir(args.output_dir, args.overwrite)
    record = RunRecord(output_dir, STAGE, vars(args))

    found = collect_transcripts(args)
    if not found.transcripts:
        raise _no_window_error(args, found)
    unit_of = {t.accession: (t.gene if args.split_by == "gene" else t.accession) for t in found.transcripts}
    unit_windows: dict[str, int] = {}
    for t in found.transcripts:
        unit_windows[unit_of[t.accession]] = unit_windows.get(unit_of[t.accession], 0) + t.n_windows
    unit_split = assign_splits(unit_windows, args.val_fraction, args.test_fraction, args.seed, args.split_by)
    split_of = {accession: unit_split[unit] for accession, unit in unit_of.items()}

    per_split: dict[str, dict[str, int]] = {}
    genes_in: dict[str, set[str]] = {}
    for split in SPLITS:
        members = [t for t in found.transcripts if split_of[t.accession] == split]
        if not members:
            LOG.warning("split %s is empty (its fraction is 0)", split)
        windows = SplitWindows(members, args.k, args.stride, args.window_size, desc=f"write {split}")
        write_sentence_split(output_dir, split, windows, windows.sources())
        genes_in[split] = {t.gene for t in members}
        per_split[split] = {
            "sequences": len(members),
            "genes": len(genes_in[split]),
            "windows": len(windows),
            "nucleotides": sum(len(t.sequence) for t in members),
        }
    shared_genes = len((genes_in["train"] & genes_in["val"]) | (genes_in["train"] & genes_in["test"])
                       | (genes_in["val"] & genes_in["test"]))
    _write_splits_table(output_dir / SPLITS_FILE, found.transcripts, split_of, found)

    total_windows = sum(s["windows"] for s in per_split.values())
    metadata = {
        "task": "autoregressive",
        "k": args.k,
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
    atomic_write_json(output_dir / METADATA_FILE, metadata)
    seconds = time.perf_counter() - begin
    record.finish({
        "sequences": metadata["sequences"],
        "genes": metadata["genes"],
        "windows": total_windows,
        "splits": per_split,
        "skipped": metadata["skipped"],
        "synthetic": found.synthetic,
        "seconds": seconds,
    })
    LOG.info(
        "%d transcripts (%d genes) -> windows train %d, val %d, test %d; skipped %s; %.1f s%s",
        metadata["sequences"], metadata["genes"], per_split["train"]["windows"], per_split["val"]["windows"],
        per_split["test"]["windows"], found.skipped, seconds, " [SYNTHETIC data]" if found.synthetic else "",
    )
    return 0

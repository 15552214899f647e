"""Reading the inputs: every FASTA record (or every block of one, with --split_by region) becomes a Unit holding its
k-mer ids and runs of valid k-mers and its window count; what is not kept is counted."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import UserError
from ..fasta import Locus, header_info, iter_fasta_pieces
from ..formats.kmer_stream import kmer_dtype, window_layout
from ..progress import Progress
from ..runio import sha256_file
from ..sequence import base_digits, kmer_ids, lowercase_bases
from .config import PrepareConfig, window_span

LOG = logging.getLogger("quixer_rna.prepare")


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
        with Progress(None, Path(path).name, unit="record", every=config.log_every) as progress:
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


def no_window_error(config: PrepareConfig, found: Collected) -> UserError:
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

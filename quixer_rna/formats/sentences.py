"""The k-mer sentence folder written by prepare_autoregressive_data.py (the seeds' layout):

    <dir>/metadata.json
    <dir>/{train,val,test}/sentences.txt   one window a line, k-mers separated by single spaces
    <dir>/{train,val,test}/labels.txt      one integer a line (0: unused by the autoregressive task)
    <dir>/{train,val,test}/sources.txt     one transcript accession a line, the window's transcript

sources.txt lets later stages resample by transcript (windows of one transcript are correlated);
folders from the earlier prototype lack it, and loaders then treat every window as its own source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import UserError
from ..runio import atomic_open, read_json
from . import SPLITS

SENTENCES_FILE = "sentences.txt"
LABELS_FILE = "labels.txt"
SOURCES_FILE = "sources.txt"
METADATA_FILE = "metadata.json"


@dataclass
class SentenceSplit:
    """One split's windows: `kmers[i]` is the list of k-mers of window i."""

    kmers: list[list[str]]
    labels: list[int]
    sources: list[str]

    def __len__(self) -> int:
        return len(self.kmers)


def write_sentence_split(
    data_dir: str | Path, split: str, windows: Sequence[Sequence[str]], sources: Sequence[str], labels: Sequence[int] | None = None
) -> None:
    """Write one split's three files atomically."""
    if len(sources) != len(windows):
        raise ValueError("one source per window is required")
    labels = [0] * len(windows) if labels is None else list(labels)
    folder = Path(data_dir) / split
    with atomic_open(folder / SENTENCES_FILE) as handle:
        for window in windows:
            handle.write(" ".join(window))
            handle.write("\n")
    with atomic_open(folder / LABELS_FILE) as handle:
        handle.writelines(f"{int(label)}\n" for label in labels)
    with atomic_open(folder / SOURCES_FILE) as handle:
        handle.writelines(f"{source}\n" for source in sources)


def read_metadata(data_dir: str | Path) -> dict:
    return read_json(Path(data_dir) / METADATA_FILE, "metadata.json of the k-mer sentence folder")


def _check_kmer_pattern(k: int | None) -> re.Pattern[str]:
    if k is None:
        return re.compile(r"[ACGT]+")
    return re.compile(r"[ACGT]{%d}" % k)


def load_sentence_split(
    data_dir: str | Path, split: str, k: int | None = None, max_kmers: int | None = None
) -> SentenceSplit:
    """Read and validate one split. Every token must be a k-mer of length k over ACGT and no window
    may hold more than `max_kmers` k-mers; a violation names the file and line."""
    folder = Path(data_dir) / split
    path = folder / SENTENCES_FILE
    if not path.is_file():
        raise UserError(f"{path}: missing; --data_dir must be the output folder of prepare_autoregressive_data.py")
    pattern = _check_kmer_pattern(k)
    kmers: list[list[str]] = []
    try:
        with open(path, encoding="ascii") as handle:
            for line_no, line in enumerate(handle, start=1):
                tokens = line.split()
                if not tokens:
                    raise UserError(f"{path}:{line_no}: empty line; every line must be one window of k-mers")
                if max_kmers is not None and len(tokens) > max_kmers:
                    raise UserError(
                        f"{path}:{line_no}: {len(tokens)} k-mers, more than --max_kmers {max_kmers}"
                    )
                for token in tokens:
                    if not pattern.fullmatch(token):
                        want = f"a {k}-mer over ACGT" if k is not None else "a k-mer over ACGT"
                        raise UserError(f"{path}:{line_no}: token {token[:20]!r} is not {want}")
                kmers.append(tokens)
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not a text file of k-mers ({exc.reason})") from exc
    if k is None and kmers:
        width = len(kmers[0][0])
        for line_no, window in enumerate(kmers, start=1):
            if any(len(token) != width for token in window):
                raise UserError(f"{path}:{line_no}: k-mers of different lengths (expected {width})")
    labels = _read_labels(folder / LABELS_FILE, len(kmers))
    sources = _read_sources(folder / SOURCES_FILE, len(kmers), split)
    return SentenceSplit(kmers=kmers, labels=labels, sources=sources)


def _read_labels(path: Path, count: int) -> list[int]:
    if not path.is_file():
        return [0] * count
    labels: list[int] = []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            text = line.strip()
            try:
                labels.append(int(text))
            except ValueError:
                raise UserError(f"{path}:{line_no}: label {text[:20]!r} is not an integer") from None
    if len(labels) != count:
        raise UserError(f"{path}: {len(labels)} labels for {count} sentences; the files must have one line per window")
    return labels


def _read_sources(path: Path, count: int, split: str) -> list[str]:
    if not path.is_file():
        return [f"{split}:{i}" for i in range(count)]
    with open(path, encoding="utf-8") as handle:
        sources = [line.rstrip("\n") for line in handle]
    if len(sources) != count:
        raise UserError(f"{path}: {len(sources)} sources for {count} sentences; the files must have one line per window")
    return sources


def load_sentence_dataset(
    data_dir: str | Path, k: int | None = None, max_kmers: int | None = None, splits: Sequence[str] = SPLITS
) -> dict[str, SentenceSplit]:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"--data_dir {data_dir}: folder not found")
    return {split: load_sentence_split(data_dir, split, k=k, max_kmers=max_kmers) for split in splits}

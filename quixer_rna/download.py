"""What every source of the download stage (ncbi, ucsc, synthetic) shares: the stage's name in run
records, the checks on --output, the refusal to mix two different downloads in one place, and the
appendable FASTA that the NCBI download grows and repairs after a crash.

A batch is appended with one write + flush + fsync. A run killed during that write leaves at most
one partial record at the end of the file, which the next start cuts off (`repair_tail`), so a
rerun of the same command loses nothing and fetches no id twice.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import BinaryIO, Sequence

from .errors import UserError
from .fasta import FastaRecord, format_record, iter_fasta, parse_header
from .stage import StageRun

LOG = logging.getLogger(__name__)

STAGE = "download_rna_sequences"
MISSING_FILE = "missing_ids.txt"  # beside the FASTA, named after it: rna.fasta.missing_ids.txt


def check_output(fasta: Path) -> None:
    """--output must be a plain FASTA file's path in a folder (the download appends to it)."""
    if fasta.suffix == ".gz":
        raise UserError(f"--output {fasta}: write plain FASTA (the download appends to it); compress it afterwards")
    if fasta.is_dir():
        raise UserError(f"--output {fasta}: is a folder; give the FASTA file's path, e.g. {fasta / 'rna_sequences.fasta'}")
    if fasta.parent.exists() and not fasta.parent.is_dir():
        raise UserError(f"--output {fasta}: {fasta.parent} is not a folder")


def check_same_run(run: StageRun, output: Path, overwrite: bool, same_run: dict[str, object]) -> None:
    """Refuse to add to an output whose recorded download used another source or selection (it would mix
    two downloads), unless --overwrite."""
    if overwrite or run.previous_record is None:
        return
    old = run.previous_record.get("args") or {}
    changed = [key for key, value in same_run.items() if _comparable(key, old.get(key)) != _comparable(key, value)]
    if changed:
        raise UserError(f"--output {output}: the download recorded in {run.place.args_path} used different "
                        f"--{', --'.join(changed)}; rerun with the same flags to resume, or pass --overwrite to start "
                        "afresh")


def _comparable(key: str, value: object) -> object:
    if key in ("csv", "output") and value:
        return Path(str(value)).name
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return value


def repair_tail(path: Path, expected_length: dict[str, int | None], block: int = 1 << 20) -> int:
    """Cut a partial last record (a crash during an append) off the FASTA; return the bytes removed.

    The last record is complete when the file ends in a newline, it has a header and a sequence, and
    the sequence is as long as the CSV says (a cut at a line end leaves a short but tidy record)."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "r+b") as handle:
        if handle.read(1) != b">":
            raise UserError(f"--output {path}: exists and is not FASTA; choose another --output or pass --overwrite")
        tail = b""
        position = size
        while True:
            begin = max(0, position - block)
            handle.seek(begin)
            tail = handle.read(position - begin) + tail
            position = begin
            found = tail.rfind(b"\n>")
            if found >= 0:
                start = position + found + 1
                break
            if position == 0:
                start = 0
                break
        handle.seek(start)
        if _complete_record(handle.read(), expected_length):
            return 0
        handle.truncate(start)
        handle.flush()
        os.fsync(handle.fileno())
    LOG.warning("%s: removed a partial last record (%d bytes) left by an interrupted run", path, size - start)
    return size - start


def _complete_record(raw: bytes, expected_length: dict[str, int | None]) -> bool:
    if not raw.endswith(b"\n"):
        return False
    try:
        lines = raw.decode("ascii").splitlines()
    except UnicodeDecodeError:
        return False
    header = lines[0][1:].strip()
    sequence = "".join(line.strip() for line in lines[1:])
    if not header or not sequence:
        return False
    want = expected_length.get(parse_header(header)[0])
    return want is None or len(sequence) == want


def accessions_in(path: Path) -> set[str]:
    if not path.is_file() or path.stat().st_size == 0:
        return set()
    return {parse_header(record.header)[0] for record in iter_fasta(path)}


def read_missing(path: Path) -> list[str]:
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


class FastaAppender:
    """Appends whole batches to the FASTA: one write, flush and fsync each, in NCBI's format with
    70-column sequence lines. The file is created by the first append, so a run that fetches
    nothing (no network) leaves no empty FASTA behind."""

    def __init__(self, path: Path):
        self.path = path
        self._handle: BinaryIO | None = None

    def append(self, records: Sequence[FastaRecord]) -> int:
        text = "".join(format_record(record.header, record.sequence) for record in records)
        data = text.encode("ascii", errors="replace")
        if self._handle is None:
            self._handle = open(self.path, "ab")
        self._handle.write(data)
        self._handle.flush()
        os.fsync(self._handle.fileno())
        return len(data)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()

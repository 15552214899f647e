"""The k-mer stream: what prepare_autoregressive_data.py writes and every later stage reads.

    <dir>/metadata.json            StreamMetadata: "format": "quixer-rna-kmer-stream", "version", k, stride,
                                   window_size, window_step, ..., and per split the counts and the sha256 of
                                   each file
    <dir>/<split>/kmers.bin        a 64-byte header (magic, version, item size, k, count), then the k-mer ids
                                   (quixer_rna.kmers numbering) of every stretch back to back, in the smallest of
                                   uint8 / uint16 / int32 / int64 that holds 4^k (uint16 for 6-mers)
    <dir>/<split>/segments.npy     int64 [S, 4]: stream offset, length, transcript row, and the index within its
                                   transcript of the stretch's first k-mer; a stretch is a maximal run of k-mers
                                   over A, C, G, T only, so a k-mer with another letter ends one
    <dir>/<split>/transcripts.tsv  row, accession, gene, length_nt, kmers: the split's transcripts in stream order
                                   (gene: the unit the split kept whole - a gene, a family or a block)
    <dir>/leak.tsv                 split, row, accession, gene, queries, shared: per val and test transcript, the
                                   L-mers looked up in train and those found there (quixer_rna.leak)

A window is a view, never a stored row: `window_size` consecutive k-mers of one stretch whose first k-mer's
index within the transcript is a multiple of `window_step`. Windows are numbered in stream order (transcript
by transcript, start by start), which is the order of the sentences.txt export. Every file is memory-mapped
or small, so opening a split costs O(stretches), not O(k-mers), and nothing per window is ever stored.

Why one module of ~550 lines: it is the one owner of the stream format (writer, metadata, reader, views and
the checks that tie them together), as the developers' guide asks; its parts change together.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence, TypedDict

import numpy as np

from ..errors import UserError
from ..runio import atomic_open, sha256_file
from . import SPLITS
from .metadata import METADATA_FILE, FolderFormat, Metadata, rebuild_hint

FORMAT = "quixer-rna-kmer-stream"
VERSION = 1
KMERS_FILE = "kmers.bin"
SEGMENTS_FILE = "segments.npy"
TRANSCRIPTS_FILE = "transcripts.tsv"
LEAK_FILE = "leak.tsv"
LEAK_COLUMNS = ["split", "row", "accession", "gene", "queries", "shared"]
STREAM_FILES = (KMERS_FILE, SEGMENTS_FILE, TRANSCRIPTS_FILE)
MAGIC = b"QXRNAKM\0"
HEADER = struct.Struct("<8sIIIIQ")
HEADER_BYTES = 64
MAX_K = 31
# Columns of segments.npy.
OFFSET, LENGTH, TRANSCRIPT, FIRST = range(4)


def kmer_dtype(k: int) -> np.dtype:
    """The smallest of uint8, uint16, int32, int64 holding every id of a k-mer (4^k values)."""
    if not 1 <= k <= MAX_K:
        raise UserError(f"--k {k}: must be between 1 and {MAX_K}")
    for dtype in (np.uint8, np.uint16, np.int32):
        if 4**k - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def regenerate_hint(folder: Path) -> str:
    """The command that rebuilds `folder`, from its run record when it has one."""
    return rebuild_hint(folder, f"prepare_autoregressive_data.py --fasta FASTA --output_dir {folder}")


def _legacy(folder: Path) -> str | None:
    """A folder of the first layout (one line of k-mers per window) names the command that rebuilds it."""
    if (folder / "train" / "sentences.txt").is_file():
        return f"{folder}: written by an earlier version (one line of k-mers per window); {regenerate_hint(folder)}"
    return None


STREAM_FORMAT = FolderFormat(
    name=FORMAT, version=VERSION, title="k-mer stream", what="a k-mer stream folder", flag="--data_dir",
    expected="the output folder of prepare_autoregressive_data.py", rebuild=regenerate_hint, legacy=_legacy)


@dataclass(frozen=True, kw_only=True)
class SplitCounts:
    """One split of a stream: what it holds and the sha256 of each of its files (STREAM_FILES)."""

    sequences: int | None = None  # kept transcripts (or blocks)
    transcripts: int
    genes: int | None = None  # units kept whole (genes, families, transcripts or blocks)
    windows: int | None = None
    nucleotides: int | None = None
    kmers: int | None = None
    segments: int | None = None
    sha256: dict[str, str]


@dataclass(frozen=True, kw_only=True)
class StreamMetadata(Metadata):
    """metadata.json of a k-mer stream folder. Later stages need k, stride, the window rule and each split's
    transcripts and checksums; the rest records how prepare_autoregressive_data.py made the data set (the
    report shows it)."""

    FORMAT: ClassVar[FolderFormat] = STREAM_FORMAT
    task: str | None = None
    k: int
    kmer_dtype: str | None = None
    stride: int
    window_size: int
    window_step: int
    window_span_nt: int | None = None
    min_length: int | None = None
    split_by: str | None = None  # gene, family, transcript or region
    split_rule: str | None = None
    val_fraction: float | None = None
    test_fraction: float | None = None
    seed: int | None = None
    synthetic: bool | None = None
    inputs: list[dict[str, Any]] | None = None  # path, sha256, records of each FASTA
    total_nucleotides: int | None = None
    soft_masked: str | None = None
    soft_masked_bases: int | None = None
    bases_left_out: dict[str, int] | None = None  # non_acgt, guard, soft_masked
    sequences: int | None = None
    genes: int | None = None
    gene_sources: dict[str, dict[str, int]] | None = None  # per split and in total: transcripts per source
    grouping: dict[str, Any] | None = None
    windows: int | None = None
    splits: dict[str, SplitCounts]
    window_fractions: dict[str, float] | None = None
    genes_in_more_than_one_split: int | None = None
    skipped: dict[str, int] | None = None  # sequences (and windows) not kept, per reason
    block_size: int | None = None  # --split_by region only
    guard_nt: int | None = None  # --split_by region only
    leak: dict[str, Any] | None = None  # the leak figure (quixer_rna.leak): rule, and per query split its counts

    @classmethod
    def read(cls, folder: str | Path) -> "StreamMetadata":
        """The metadata of a stream folder, with every split."""
        folder = Path(folder)
        meta = super().read(folder)
        missing = [split for split in SPLITS if split not in meta.splits]
        if missing:
            raise UserError(f"{folder / METADATA_FILE}: no 'splits.{missing[0]}'; {regenerate_hint(folder)}")
        return meta

    def checksums(self) -> dict[str, dict[str, str]]:
        return {split: dict(self.splits[split].sha256) for split in SPLITS}


# ---- writing --------------------------------------------------------------------------------------------------

@dataclass
class TranscriptRow:
    accession: str
    gene: str
    length_nt: int
    kmers: int


class StreamWriter:
    """Writes one split: `add(...)` each transcript's k-mer ids in order, then `close()` returns the counts and
    file checksums for metadata.json. Files appear atomically on close, never half written."""

    def __init__(self, folder: Path, split: str, k: int):
        self.folder = Path(folder) / split
        self.k = k
        self.dtype = kmer_dtype(k)
        self._bin = atomic_open(self.folder / KMERS_FILE, "wb", encoding=None)
        self._handle = self._bin.__enter__()
        self._handle.write(bytes(HEADER_BYTES))
        self.count = 0
        self.segments: list[tuple[int, int, int, int]] = []
        self.transcripts: list[TranscriptRow] = []

    def add(self, accession: str, gene: str, length_nt: int, ids: np.ndarray, valid: np.ndarray) -> None:
        """One transcript: its k-mer ids [n] and which of them are over ACGT only [n]; every maximal run of
        valid k-mers becomes a stretch."""
        edges = np.flatnonzero(np.diff(np.concatenate(([0], valid.astype(np.int8), [0]))))
        self.add_runs(accession, gene, length_nt, ids, np.stack((edges[::2], edges[1::2] - edges[::2]), axis=1))

    def add_runs(self, accession: str, gene: str, length_nt: int, ids: np.ndarray, runs: np.ndarray) -> None:
        """One transcript: its k-mer ids [n] and its runs of valid k-mers as (first index, length) rows, each of
        which becomes a stretch."""
        row = len(self.transcripts)
        self.transcripts.append(TranscriptRow(accession, gene, int(length_nt), int(len(ids))))
        for first, length in np.asarray(runs, dtype=np.int64).reshape(-1, 2).tolist():
            self._handle.write(np.ascontiguousarray(ids[first:first + length], dtype=self.dtype).tobytes())
            self.segments.append((self.count, length, row, first))
            self.count += length

    def close(self) -> dict[str, Any]:
        self._handle.seek(0)
        self._handle.write(HEADER.pack(MAGIC, VERSION, self.dtype.itemsize, self.k, 0, self.count))
        self._bin.__exit__(None, None, None)
        segments = np.asarray(self.segments, dtype=np.int64).reshape(-1, 4)
        with atomic_open(self.folder / SEGMENTS_FILE, "wb", encoding=None) as handle:
            np.save(handle, segments)
        with atomic_open(self.folder / TRANSCRIPTS_FILE) as handle:
            handle.write("row\taccession\tgene\tlength_nt\tkmers\n")
            for row, t in enumerate(self.transcripts):
                handle.write(f"{row}\t{t.accession}\t{t.gene}\t{t.length_nt}\t{t.kmers}\n")
        return {
            "kmers": self.count,
            "segments": len(self.segments),
            "transcripts": len(self.transcripts),
            "sha256": {name: sha256_file(self.folder / name) for name in STREAM_FILES},
        }

    def abort(self) -> None:
        """Drop the half-written stream (an exception in the caller)."""
        self._bin.__exit__(RuntimeError, RuntimeError("aborted"), None)


def write_leak_table(folder: Path, splits: dict[str, tuple["TranscriptTable", Any]]) -> None:
    """leak.tsv from each query split's transcripts and its per-transcript counts (`.queries`, `.shared`)."""
    with atomic_open(Path(folder) / LEAK_FILE) as handle:
        handle.write("\t".join(LEAK_COLUMNS) + "\n")
        for split, (table, counts) in splits.items():
            for row in range(len(table)):
                handle.write(f"{split}\t{row}\t{table.accessions[row]}\t{table.genes[row]}\t"
                             f"{int(counts.queries[row])}\t{int(counts.shared[row])}\n")


def read_leak_table(folder: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """leak.tsv as per split {"gene": names, "queries": int64, "shared": int64}, indexed by transcript row; an
    absent file (a stream with stride > k, or older) gives an empty dict."""
    path = Path(folder) / LEAK_FILE
    if not path.is_file():
        return {}
    columns: dict[str, dict[str, list]] = {}
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle, delimiter="\t")
            if next(reader, None) != LEAK_COLUMNS:
                raise UserError(f"{path}: not a leak table (expected columns {', '.join(LEAK_COLUMNS)})")
            for split, _, _, gene, queries, shared in reader:
                into = columns.setdefault(split, {"gene": [], "queries": [], "shared": []})
                into["gene"].append(gene)
                into["queries"].append(int(queries))
                into["shared"].append(int(shared))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable leak table ({exc})") from exc
    return {split: {"gene": np.asarray(v["gene"], dtype=object), "queries": np.asarray(v["queries"], dtype=np.int64),
                    "shared": np.asarray(v["shared"], dtype=np.int64)} for split, v in columns.items()}


# ---- windows over stretches -----------------------------------------------------------------------------------

def window_layout(segments: np.ndarray, window_size: int, window_step: int) -> tuple[np.ndarray, np.ndarray]:
    """Per stretch: the stream position of its first window and its number of windows."""
    first = segments[:, FIRST]
    aligned = -(-first // window_step) * window_step  # first transcript index >= first that is a multiple of step
    lead = aligned - first
    room = segments[:, LENGTH] - lead - window_size
    counts = np.where(room >= 0, room // window_step + 1, 0)
    return segments[:, OFFSET] + lead, counts.astype(np.int64)


@dataclass
class TranscriptTable:
    accessions: list[str]
    genes: list[str]
    length_nt: np.ndarray
    kmers: np.ndarray

    def __len__(self) -> int:
        return len(self.accessions)


def read_transcripts(path: Path) -> TranscriptTable:
    accessions, genes, lengths, kmers = [], [], [], []
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle, delimiter="\t")
            header = next(reader, None)
            if header != ["row", "accession", "gene", "length_nt", "kmers"]:
                raise UserError(f"{path}: not a transcripts table (header {header})")
            for line_no, row in enumerate(reader, start=2):
                if len(row) != 5 or row[0] != str(line_no - 2):
                    raise UserError(f"{path}:{line_no}: malformed row")
                accessions.append(row[1])
                genes.append(row[2])
                lengths.append(int(row[3]))
                kmers.append(int(row[4]))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: unreadable transcripts table ({exc})") from exc
    return TranscriptTable(accessions, genes, np.asarray(lengths, dtype=np.int64), np.asarray(kmers, dtype=np.int64))


@dataclass
class KmerStream:
    """One split of a k-mer stream folder, opened by `open_stream`. Window numbers index `windows(...)`;
    `subset(...)` gives a view over some transcripts only (e.g. a fraction of the training genes)."""

    folder: Path
    split: str
    k: int
    stride: int
    window_size: int
    window_step: int
    kmers: np.ndarray  # memory-mapped ids, copy-on-write so torch can wrap it without a copy
    segments: np.ndarray  # int64 [S, 4]
    first_window: np.ndarray = field(init=False)  # stream position of each stretch's first window
    counts: np.ndarray = field(init=False)  # windows per stretch
    row_base: np.ndarray | None = None  # number of each stretch's first window in the whole split
    _transcripts: TranscriptTable | None = None

    def __post_init__(self) -> None:
        self.first_window, self.counts = window_layout(self.segments, self.window_size, self.window_step)
        self.cum = np.concatenate(([0], np.cumsum(self.counts)))
        if self.row_base is None:
            self.row_base = self.cum[:-1].copy()

    @property
    def num_windows(self) -> int:
        return int(self.cum[-1])

    @property
    def num_kmers(self) -> int:
        """k-mers in this view's stretches (all of the split's, or a subset's)."""
        return int(self.segments[:, LENGTH].sum())

    @property
    def transcripts(self) -> TranscriptTable:
        if self._transcripts is None:
            self._transcripts = read_transcripts(self.folder / self.split / TRANSCRIPTS_FILE)
        return self._transcripts

    def locate(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(stretch, window number within it) of window numbers `index`."""
        index = np.asarray(index, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= self.num_windows):
            raise IndexError(f"window numbers outside [0, {self.num_windows})")
        stretch = np.searchsorted(self.cum, index, side="right") - 1
        return stretch, index - self.cum[stretch]

    def starts(self, index: np.ndarray) -> np.ndarray:
        """Stream positions of the first k-mer of windows `index`."""
        stretch, within = self.locate(index)
        return self.first_window[stretch] + within * self.window_step

    def rows(self, index: np.ndarray) -> np.ndarray:
        """Numbers of windows `index` in the whole split (they differ from `index` in a subset view)."""
        stretch, within = self.locate(index)
        return self.row_base[stretch] + within

    def windows(self, index: np.ndarray) -> np.ndarray:
        """k-mer ids [len(index), window_size] of windows `index`."""
        return self.kmers[self.starts(index)[:, None] + np.arange(self.window_size)]

    def window_transcripts(self, index: np.ndarray | None = None) -> np.ndarray:
        """Transcript row (in transcripts.tsv) of windows `index` (default: every window), int32."""
        per_stretch = self.segments[:, TRANSCRIPT].astype(np.int32)
        if index is None:
            return np.repeat(per_stretch, self.counts)
        return per_stretch[self.locate(index)[0]]

    def target_positions(self, begin: int, end: int) -> np.ndarray:
        """Stream positions of the last k-mer (the target) of windows begin..end-1."""
        return self.starts(np.arange(begin, end)) + self.window_size - 1

    def subset(self, transcript_rows: np.ndarray) -> "KmerStream":
        """A view holding only the stretches of the given transcripts (same stream, same window rules)."""
        keep = np.isin(self.segments[:, TRANSCRIPT], np.asarray(transcript_rows))
        return KmerStream(self.folder, self.split, self.k, self.stride, self.window_size, self.window_step,
                          self.kmers, self.segments[keep], row_base=self.row_base[keep], _transcripts=self._transcripts)

    def present(self, chunk: int = 1 << 24) -> np.ndarray:
        """bool [4^k]: which k-mer ids occur in the split's whole stream (a subset view shares it), read in
        chunks: a genome's stream is hundreds of millions of ids, and one int64 copy of it several GiB."""
        seen = np.zeros(4**self.k, dtype=bool)
        for begin in range(0, len(self.kmers), chunk):
            seen[np.asarray(self.kmers[begin:begin + chunk], dtype=np.int64)] = True
        return seen

    def iter_chunks(self, size: int) -> Iterator[tuple[int, int]]:
        """(begin, end) window ranges of at most `size`, covering every window in order."""
        for begin in range(0, self.num_windows, size):
            yield begin, min(self.num_windows, begin + size)


# ---- reading and validating -----------------------------------------------------------------------------------

def _open_kmers(path: Path, k: int, hint: str) -> np.ndarray:
    if not path.is_file():
        raise UserError(f"{path}: missing; {hint}")
    size = path.stat().st_size
    with open(path, "rb") as handle:
        raw = handle.read(HEADER.size)
    if len(raw) < HEADER.size:
        raise UserError(f"{path}: truncated ({size} bytes, no header); {hint}")
    magic, version, itemsize, file_k, _, count = HEADER.unpack(raw)
    if magic != MAGIC:
        raise UserError(f"{path}: not a k-mer stream file (bad magic); {hint}")
    if version != VERSION:
        raise UserError(f"{path}: stream version {version}, this code reads {VERSION}; {hint}")
    dtype = kmer_dtype(k)
    if file_k != k or itemsize != dtype.itemsize:
        raise UserError(f"{path}: holds {file_k}-mers of {itemsize} bytes, metadata.json says k={k}; {hint}")
    expected = HEADER_BYTES + count * itemsize
    if size != expected:
        raise UserError(f"{path}: {size} bytes but its header announces {count} k-mers ({expected} bytes): "
                        f"truncated or damaged; {hint}")
    if count == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="c", offset=HEADER_BYTES, shape=(count,))


def _check_segments(path: Path, segments: np.ndarray, count: int, hint: str) -> None:
    if segments.ndim != 2 or segments.shape[1] != 4 or segments.dtype != np.int64:
        raise UserError(f"{path}: expected int64 [S, 4], found {segments.dtype} {segments.shape}; {hint}")
    if not len(segments):
        if count:
            raise UserError(f"{path}: no stretches for {count} k-mers; {hint}")
        return
    offsets, lengths = segments[:, OFFSET], segments[:, LENGTH]
    ends = offsets + lengths
    if offsets[0] != 0 or (lengths <= 0).any() or (offsets[1:] != ends[:-1]).any() or ends[-1] != count:
        raise UserError(f"{path}: stretch offsets do not tile the {count} k-mers of {KMERS_FILE}; {hint}")
    if (segments[:, FIRST] < 0).any() or (np.diff(segments[:, TRANSCRIPT]) < 0).any() or segments[0, TRANSCRIPT] < 0:
        raise UserError(f"{path}: stretch transcript rows or starts out of order; {hint}")


def open_stream(folder: str | Path, split: str, meta: StreamMetadata | None = None) -> KmerStream:
    """Open one split, checking the header, the file size and that the stretches tile the stream."""
    folder = Path(folder)
    meta = meta or StreamMetadata.read(folder)
    hint = regenerate_hint(folder)
    kmers = _open_kmers(folder / split / KMERS_FILE, meta.k, hint)
    seg_path = folder / split / SEGMENTS_FILE
    if not seg_path.is_file():
        raise UserError(f"{seg_path}: missing; {hint}")
    try:
        segments = np.load(seg_path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"{seg_path}: unreadable ({exc}); {hint}") from exc
    _check_segments(seg_path, segments, len(kmers), hint)
    expected = meta.splits[split].transcripts if split in meta.splits else None
    if len(segments) and expected is not None and segments[-1, TRANSCRIPT] >= expected:
        raise UserError(f"{seg_path}: transcript rows beyond the {expected} transcripts of the split; {hint}")
    return KmerStream(folder, split, meta.k, meta.stride, meta.window_size, meta.window_step, kmers, segments)


@dataclass
class StreamData:
    """A whole k-mer stream folder: its metadata and every split."""

    folder: Path
    meta: StreamMetadata
    splits: dict[str, KmerStream]

    @property
    def k(self) -> int:
        return self.meta.k

    @property
    def window_size(self) -> int:
        return self.meta.window_size

    def checksums(self) -> dict[str, dict[str, str]]:
        return self.meta.checksums()


def open_stream_data(folder: str | Path, splits: Sequence[str] = SPLITS) -> StreamData:
    meta = StreamMetadata.read(folder)
    return StreamData(Path(folder), meta, {split: open_stream(folder, split, meta) for split in splits})


def fingerprint(*parts: Any) -> str:
    """sha256 of JSON-serialised checksums and settings: what a resume or a paired comparison must share."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def write_sentences_export(stream: KmerStream, folder: Path, chunk: int = 65536) -> None:
    """The seeds' layout of one split, for people who read it (no stage reads it back): sentences.txt (one
    window of k-mers per line), labels.txt (0 per line) and sources.txt (the window's transcript)."""
    from ..kmers import id_to_kmer

    names = np.array([id_to_kmer(i, stream.k) for i in range(4**stream.k)]) if stream.k <= 10 else None
    accessions = np.asarray(stream.transcripts.accessions, dtype=object)
    split_dir = folder / stream.split
    with atomic_open(split_dir / "sentences.txt") as sentences, atomic_open(split_dir / "labels.txt") as labels, \
            atomic_open(split_dir / "sources.txt") as sources:
        for begin, end in stream.iter_chunks(chunk):
            ids = stream.windows(np.arange(begin, end))
            if names is not None:
                words = names[ids.astype(np.int64)]
            else:
                words = np.vectorize(lambda i: id_to_kmer(int(i), stream.k))(ids)
            text = io.StringIO()
            for row in words:
                text.write(" ".join(row))
                text.write("\n")
            sentences.write(text.getvalue())
            labels.write("0\n" * (end - begin))
            sources.writelines(f"{a}\n" for a in accessions[stream.window_transcripts(np.arange(begin, end))])


# ---- references from later stages -----------------------------------------------------------------------------

class StreamReference(TypedDict):
    """What a later stage's metadata.json records of the stream it read: where it is (absolute, and relative to
    the later stage's folder, so a moved study still resolves), its k and window size, and the checksums of its
    files. A typed dict: it is written into metadata.json as it is."""

    path: str
    relative: str
    k: int
    window_size: int
    sha256: dict[str, dict[str, str]]


def stream_reference(stream: StreamData, from_folder: Path) -> StreamReference:
    absolute = stream.folder.resolve()
    return StreamReference(path=str(absolute), relative=os.path.relpath(absolute, Path(from_folder).resolve()),
                           k=stream.k, window_size=stream.window_size, sha256=stream.checksums())


def resolve_stream(reference: StreamReference, from_folder: Path, meta_path: Path,
                   splits: Sequence[str] = SPLITS) -> StreamData:
    """Open the stream a later stage recorded, refusing one rewritten since (its checksums differ)."""
    candidates = [Path(from_folder) / reference["relative"], Path(reference["path"])]
    folder = next((c for c in candidates if (c / METADATA_FILE).is_file()), None)
    if folder is None:
        raise UserError(f"{meta_path}: its k-mer stream folder {reference['path']} is gone; "
                        "restore it or rebuild this folder from a prepare_autoregressive_data.py output")
    data = open_stream_data(folder, splits)
    changed = [s for s in splits if reference["sha256"].get(s) != data.checksums().get(s)]
    if changed:
        raise UserError(f"{meta_path}: the k-mer stream in {folder} was rewritten after this folder was made "
                        f"(split {', '.join(changed)} differs); rerun this folder's stage on it")
    return data


def window_position_counts(stream: KmerStream, size: int, chunk: int = 1 << 22) -> np.ndarray:
    """How often each k-mer id (of `size` ids) occurs over all window positions of `stream`: a stream position
    counts once per window holding it. This is the weight of every k-mer in the windows a model reads."""
    counts = np.zeros(size, dtype=np.float64)
    if not len(stream.segments):
        return counts
    ends = stream.segments[:, OFFSET] + stream.segments[:, LENGTH]
    step, width = stream.window_step, stream.window_size
    for begin in range(0, len(stream.kmers), chunk):
        positions = np.arange(begin, min(len(stream.kmers), begin + chunk), dtype=np.int64)
        stretch = np.searchsorted(ends, positions, side="right")
        if not len(stretch) or stretch.max() >= len(ends):
            stretch = np.minimum(stretch, len(ends) - 1)
        offset = positions - stream.first_window[stretch]
        last = np.minimum(stream.counts[stretch] - 1, np.floor_divide(offset, step))
        first = np.maximum(0, -np.floor_divide(-(offset - width + 1), step))
        cover = np.maximum(0, last - first + 1)
        held = cover > 0
        counts += np.bincount(np.asarray(stream.kmers[begin:begin + len(positions)], dtype=np.int64)[held],
                              weights=cover[held], minlength=size)
    return counts

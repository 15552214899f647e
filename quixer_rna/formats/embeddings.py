"""The embedding folder lambeq_encoder.py writes and quantize_lambeq_embeddings.py reads.

    <dir>/metadata.json              EmbeddingMetadata: "format": "quixer-rna-embeddings", "version", "layout",
                                     the circuit, and "stream": where the k-mer stream is and its checksums
    <dir>/table.npy                  float32 [R, D]: the embedding of every k-mer (layout "table")
    <dir>/table_kmers.npy            int64 [R], ascending: which k-mer ids the rows are, present only when the
                                     table holds just the k-mers that occur (4^k too large to embed them all)
    <dir>/<split>_embeddings.npy     float32 [N, W, D] (layout "windows"): one embedding per position of every
                                     window, written only when embeddings depend on context (--context stairs)

Context-free embeddings are a function of the k-mer alone, so the table is all there is to store: a window's
embeddings are the table rows of its k-mers. The seeds' per-window `<split>.pt` files (`--dense`) are an
export for people who read them; no stage reads them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from ..errors import UserError
from ..runio import atomic_open, sha256_file
from .kmer_stream import StreamData, StreamReference, resolve_stream
from .metadata import METADATA_FILE, FolderFormat, Metadata, rebuild_hint

FORMAT = "quixer-rna-embeddings"
VERSION = 2  # 2: the window size is "window_size" (was "window_length")
TABLE_FILE = "table.npy"
TABLE_KMERS_FILE = "table_kmers.npy"


def _rebuild(folder: Path) -> str:
    return rebuild_hint(folder, f"lambeq_encoder.py --data_dir PREPARE_DIR --output_dir {folder}")


def _legacy(folder: Path) -> str | None:
    """A folder of the first layout (per-window .pt files) names the command that rebuilds it."""
    if not (folder / "train.pt").is_file():
        return None
    return (f"--embeddings_dir {folder}: written by an earlier version (per-window .pt files); rerun "
            f"lambeq_encoder.py --data_dir PREPARE_DIR --output_dir {folder} --overwrite on a "
            "prepare_autoregressive_data.py output")


def _window_size_key(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: the window size was "window_length"."""
    return {("window_size" if key == "window_length" else key): value for key, value in data.items()}


EMBEDDING_FORMAT = FolderFormat(
    name=FORMAT, version=VERSION, title="embedding format", what="an embedding folder", flag="--embeddings_dir",
    expected="the output folder of lambeq_encoder.py", rebuild=_rebuild, legacy=_legacy,
    upgrades={1: _window_size_key})


@dataclass(frozen=True, kw_only=True)
class EmbeddingMetadata(Metadata):
    """metadata.json of an embedding folder. The quantizer needs the layout, the stream and embedding_dim; the
    rest records the circuit and the table (the report shows the circuit and the distinct embeddings)."""

    FORMAT: ClassVar[FolderFormat] = EMBEDDING_FORMAT
    layout: Literal["table", "windows"]
    stage: str | None = None
    stream: StreamReference
    files: dict[str, str] | None = None  # file name -> sha256
    lambeq_version: str | None = None
    ansatz: str | None = None
    qubits: int | None = None
    layers: int | None = None
    readout: str | None = None
    readout_layout: str | None = None
    context: str | None = None
    k: int | None = None
    embedding_dim: int
    window_size: int | None = None
    seed: int | None = None
    device: str | None = None
    precision: str | None = None
    encoding: dict[str, Any] | None = None  # how bases become qubit rotations
    shared_weights: dict[str, Any] | None = None
    windows: dict[str, int] | None = None
    distinct_kmers: dict[str, int] | None = None
    table_rows: int | None = None
    table_holds: str | None = None
    distinct_embeddings: int | None = None
    distinct_tolerance: float | None = None
    timings: dict[str, float] | None = None
    data_dir: str | None = None


def window_file(folder: Path, split: str) -> Path:
    return Path(folder) / f"{split}_embeddings.npy"


def save_npy(path: Path, array: np.ndarray) -> str:
    """Write one array atomically; returns its sha256."""
    with atomic_open(path, "wb", encoding=None) as handle:
        np.save(handle, np.ascontiguousarray(array))
    return sha256_file(path)


class WindowArrayWriter:
    """Fills a [N, ...] .npy file chunk by chunk through a memory map, renamed into place on `close`
    (so a killed run never leaves a file that looks whole)."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: Any):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.partial")
        self.array = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=dtype, shape=shape)

    def close(self) -> str:
        self.array.flush()
        del self.array
        os.replace(self.tmp, self.path)
        return sha256_file(self.path)


@dataclass
class EmbeddingData:
    folder: Path
    meta: EmbeddingMetadata
    stream: StreamData
    table: np.ndarray | None
    table_kmers: np.ndarray | None

    @property
    def layout(self) -> str:
        return self.meta.layout

    @property
    def dim(self) -> int:
        return self.meta.embedding_dim

    def window_embeddings(self, split: str) -> np.ndarray:
        """float32 [N, W, D] of one split, memory-mapped (layout "windows")."""
        path = window_file(self.folder, split)
        if not path.is_file():
            raise UserError(f"{path}: missing; rerun lambeq_encoder.py")
        array = np.load(path, mmap_mode="r")
        expected = (self.stream.splits[split].num_windows, self.stream.window_size, self.dim)
        if array.shape != expected:
            raise UserError(f"{path}: shape {array.shape}, expected {expected}; rerun lambeq_encoder.py")
        return array


def open_embeddings(folder: str | Path) -> EmbeddingData:
    """Open an embedding folder and the k-mer stream it was made from, checking both."""
    folder = Path(folder)
    meta = EmbeddingMetadata.read(folder)
    stream = resolve_stream(meta.stream, folder, folder / METADATA_FILE)
    table = table_kmers = None
    if meta.layout == "table":
        table = _load(folder / TABLE_FILE)
        if table.ndim != 2 or table.shape[1] != meta.embedding_dim or table.dtype != np.float32:
            raise UserError(f"{folder / TABLE_FILE}: expected float32 [R, {meta.embedding_dim}], found "
                            f"{table.dtype} {table.shape}; rerun lambeq_encoder.py")
        if (folder / TABLE_KMERS_FILE).is_file():
            table_kmers = _load(folder / TABLE_KMERS_FILE)
            if table_kmers.shape != (table.shape[0],) or (np.diff(table_kmers) <= 0).any():
                raise UserError(f"{folder / TABLE_KMERS_FILE}: must list one ascending k-mer id per table row")
        elif table.shape[0] != 4**stream.k:
            raise UserError(f"{folder / TABLE_FILE}: {table.shape[0]} rows but {stream.k}-mers need 4^{stream.k} = "
                            f"{4**stream.k}; rerun lambeq_encoder.py")
        if not np.isfinite(table).all():
            raise UserError(f"{folder / TABLE_FILE}: embeddings contain NaN or infinite values; rerun lambeq_encoder.py")
    return EmbeddingData(folder, meta, stream, table, table_kmers)


def _load(path: Path) -> np.ndarray:
    if not path.is_file():
        raise UserError(f"{path}: missing; rerun lambeq_encoder.py")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable ({exc}); rerun lambeq_encoder.py") from exc

"""The embedding folder lambeq_encoder.py writes and quantize_lambeq_embeddings.py reads.

    <dir>/metadata.json              "format": "quixer-rna-embeddings", "version", "layout", the circuit, and
                                     "stream": where the k-mer stream is and its checksums
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
from typing import Any

import numpy as np

from ..errors import UserError
from ..runio import atomic_open, read_json, sha256_file
from .kmer_stream import StreamData, resolve_stream

FORMAT = "quixer-rna-embeddings"
VERSION = 1
LAYOUTS = ("table", "windows")
TABLE_FILE = "table.npy"
TABLE_KMERS_FILE = "table_kmers.npy"
METADATA_FILE = "metadata.json"


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
    meta: dict[str, Any]
    stream: StreamData
    table: np.ndarray | None
    table_kmers: np.ndarray | None

    @property
    def layout(self) -> str:
        return str(self.meta["layout"])

    @property
    def dim(self) -> int:
        return int(self.meta["embedding_dim"])

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
    if not folder.is_dir():
        raise UserError(f"--embeddings_dir {folder}: folder not found")
    meta_path = folder / METADATA_FILE
    if not meta_path.is_file():
        raise UserError(f"--embeddings_dir {folder}: no {METADATA_FILE}; give the output folder of lambeq_encoder.py")
    meta = read_json(meta_path, "embedding metadata")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        if (folder / "train.pt").is_file():
            raise UserError(f"--embeddings_dir {folder}: written by an earlier version (per-window .pt files); rerun "
                            f"lambeq_encoder.py --data_dir PREPARE_DIR --output_dir {folder} --overwrite on a "
                            "prepare_autoregressive_data.py output")
        raise UserError(f"{meta_path}: not an embedding folder written by lambeq_encoder.py")
    if meta.get("version") != VERSION or meta.get("layout") not in LAYOUTS:
        raise UserError(f"{meta_path}: embedding format version {meta.get('version')} / layout {meta.get('layout')!r} "
                        f"is not {VERSION} / one of {LAYOUTS}; rerun lambeq_encoder.py")
    stream = resolve_stream(meta.get("stream"), folder, meta_path)
    table = table_kmers = None
    if meta["layout"] == "table":
        table = _load(folder / TABLE_FILE)
        if table.ndim != 2 or table.shape[1] != int(meta["embedding_dim"]) or table.dtype != np.float32:
            raise UserError(f"{folder / TABLE_FILE}: expected float32 [R, {meta['embedding_dim']}], found "
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

"""Embedding files written by lambeq_encoder.py and read by quantize_lambeq_embeddings.py.

    <dir>/{train,val,test}.pt  a dict of
        format      "compact" or "dense"
        k           int, the k-mer length
        labels      int64 [N]
        sources     list[str], the transcript of each window
      compact (context-free, exact, small):
        kmer_ids    int64 [N, L]   ids of quixer_rna.kmers
        table       float32 [4^k, D]  the embedding of every k-mer
      dense (the seeds' layout; always for contextual embeddings):
        embeddings  float32 [N, L, D]
        kmer_ids    int64 [N, L]   (optional) present for context-free dense files
    <dir>/metadata.json
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import UserError
from ..runio import atomic_torch_save, read_torch
from . import SPLITS, split_files

FORMATS = ("compact", "dense")


@dataclass
class EmbeddingSplit:
    k: int
    labels: "torch.Tensor"  # noqa: F821
    sources: list[str]
    kmer_ids: "torch.Tensor | None" = None  # noqa: F821
    table: "torch.Tensor | None" = None  # noqa: F821
    embeddings: "torch.Tensor | None" = None  # noqa: F821

    @property
    def is_compact(self) -> bool:
        return self.table is not None

    @property
    def dim(self) -> int:
        return int((self.table if self.is_compact else self.embeddings).shape[-1])

    @property
    def seq_len(self) -> int:
        return int((self.kmer_ids if self.is_compact else self.embeddings).shape[1])

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def dense(self) -> "torch.Tensor":  # noqa: F821
        """The seeds' `embeddings` [N, L, D] (materialised from the table for compact files)."""
        if self.embeddings is not None:
            return self.embeddings
        return self.table[self.kmer_ids]


def save_embedding_split(
    path: str | Path,
    *,
    k: int,
    labels: "torch.Tensor",  # noqa: F821
    sources: Sequence[str],
    kmer_ids: "torch.Tensor | None" = None,  # noqa: F821
    table: "torch.Tensor | None" = None,  # noqa: F821
    embeddings: "torch.Tensor | None" = None,  # noqa: F821
) -> None:
    """Write a compact split (kmer_ids + table) or a dense one (embeddings [+ kmer_ids])."""
    if (table is None) == (embeddings is None):
        raise ValueError("give exactly one of table (compact) or embeddings (dense)")
    payload = {
        "format": "compact" if table is not None else "dense",
        "k": int(k),
        "labels": labels.to("cpu").long().contiguous(),
        "sources": list(sources),
    }
    if kmer_ids is not None:
        payload["kmer_ids"] = kmer_ids.to("cpu").long().contiguous()
    if table is not None:
        if kmer_ids is None:
            raise ValueError("a compact split needs kmer_ids")
        payload["table"] = table.to("cpu").float().contiguous()
    else:
        payload["embeddings"] = embeddings.to("cpu").float().contiguous()
    atomic_torch_save(payload, path)


def load_embedding_split(path: str | Path) -> EmbeddingSplit:
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: embedding file not found; --embeddings_dir must be the output of lambeq_encoder.py")
    payload = read_torch(path, "embedding file")
    if not isinstance(payload, dict):
        raise UserError(f"{path}: expected a dict of tensors written by lambeq_encoder.py")
    fmt = payload.get("format", "dense" if "embeddings" in payload else None)
    if fmt not in FORMATS:
        raise UserError(f"{path}: neither compact (kmer_ids + table) nor dense (embeddings) embeddings")
    kmer_ids = payload.get("kmer_ids")
    if fmt == "compact":
        table = payload.get("table")
        if not isinstance(table, torch.Tensor) or table.dim() != 2:
            raise UserError(f"{path}: 'table' must be a 2-D tensor [4^k, D]")
        if not isinstance(kmer_ids, torch.Tensor) or kmer_ids.dim() != 2:
            raise UserError(f"{path}: 'kmer_ids' must be a 2-D tensor [N, L]")
        if kmer_ids.numel() and (int(kmer_ids.min()) < 0 or int(kmer_ids.max()) >= table.shape[0]):
            raise UserError(f"{path}: k-mer ids outside the table of {table.shape[0]} rows")
        n = kmer_ids.shape[0]
        embeddings = None
    else:
        table = None
        embeddings = payload.get("embeddings")
        if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 3:
            raise UserError(f"{path}: 'embeddings' must be a 3-D tensor [N, L, D]")
        n = embeddings.shape[0]
    labels = payload.get("labels")
    if labels is None:
        labels = torch.zeros(n, dtype=torch.int64)
    elif not isinstance(labels, torch.Tensor) or labels.shape[0] != n:
        raise UserError(f"{path}: 'labels' must have one entry per window ({n})")
    sources = list(payload.get("sources") or [f"{path.stem}:{i}" for i in range(n)])
    if len(sources) != n:
        raise UserError(f"{path}: {len(sources)} sources for {n} windows")
    return EmbeddingSplit(
        k=int(payload.get("k", 0)),
        labels=labels.long(),
        sources=sources,
        kmer_ids=kmer_ids.long() if isinstance(kmer_ids, torch.Tensor) else None,
        table=table.float() if table is not None else None,
        embeddings=embeddings.float() if embeddings is not None else None,
    )


def load_embedding_dataset(embeddings_dir: str | Path, splits: Sequence[str] = SPLITS) -> dict[str, EmbeddingSplit]:
    """Load every split; a missing one, or splits of different widths, is a UserError."""
    loaded = {s: load_embedding_split(path) for s, path in split_files(embeddings_dir, "--embeddings_dir", splits).items()}
    dims = {s: e.dim for s, e in loaded.items()}
    if len(set(dims.values())) != 1:
        raise UserError(f"--embeddings_dir {embeddings_dir}: splits have different embedding widths {dims}")
    return loaded

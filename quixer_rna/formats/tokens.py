"""Token files: what quantize_lambeq_embeddings.py and prepare_classical_benchmarks.py write and
every trainer reads.

    <dir>/{train,val,test}.pt  a dict of
        sequences   int64 [N, L]  token ids in [0, vocab_size); tokens 1..L-1 predict token L
        labels      int64 [N]     class labels (0 for the autoregressive task)
        vocab_size  int           size of the token vocabulary
        sources     list[str]     (optional) transcript of each window, for resampling by transcript

Files hold only tensors and plain types, so they load with torch.load(weights_only=True).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import UserError
from ..runio import atomic_torch_save, read_torch
from . import SPLITS, split_files


@dataclass
class TokenSplit:
    sequences: "torch.Tensor"  # noqa: F821  int64 [N, L]
    labels: "torch.Tensor"  # noqa: F821  int64 [N]
    vocab_size: int
    sources: list[str]

    def __len__(self) -> int:
        return int(self.sequences.shape[0])


def save_token_split(
    path: str | Path,
    sequences: "torch.Tensor",  # noqa: F821
    vocab_size: int,
    labels: "torch.Tensor | None" = None,  # noqa: F821
    sources: Sequence[str] | None = None,
) -> None:
    import torch

    sequences = torch.as_tensor(sequences, dtype=torch.int64)
    if sequences.dim() != 2:
        raise ValueError(f"sequences must be [N, L], got {tuple(sequences.shape)}")
    n = sequences.shape[0]
    labels = torch.zeros(n, dtype=torch.int64) if labels is None else torch.as_tensor(labels, dtype=torch.int64)
    if sequences.numel() and (int(sequences.min()) < 0 or int(sequences.max()) >= vocab_size):
        raise ValueError("token ids must lie in [0, vocab_size)")
    payload = {
        "sequences": sequences.contiguous(),
        "labels": labels.contiguous(),
        "vocab_size": int(vocab_size),
        "sources": list(sources) if sources is not None else [],
    }
    atomic_torch_save(payload, path)


def load_token_split(path: str | Path, vocab_size: int | None = None) -> TokenSplit:
    """Load and validate one split. `vocab_size` (when the file has none) bounds the ids."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: token file not found")
    payload = read_torch(path, "token file")
    if not isinstance(payload, dict) or "sequences" not in payload:
        raise UserError(f"{path}: no 'sequences' tensor; expected the output of quantize_lambeq_embeddings.py")
    sequences = payload["sequences"]
    if not isinstance(sequences, torch.Tensor) or sequences.dim() != 2:
        raise UserError(f"{path}: 'sequences' must be a 2-D tensor [N, L]")
    if sequences.dtype.is_floating_point or sequences.dtype == torch.bool:
        raise UserError(f"{path}: 'sequences' must hold integer token ids, found {sequences.dtype}")
    sequences = sequences.to(torch.int64)
    if sequences.shape[1] < 2:
        raise UserError(f"{path}: windows of {sequences.shape[1]} token(s); at least 2 are needed (context + target)")
    n = sequences.shape[0]
    labels = payload.get("labels")
    if labels is None:
        labels = torch.zeros(n, dtype=torch.int64)
    elif not isinstance(labels, torch.Tensor) or labels.shape != (n,):
        raise UserError(f"{path}: 'labels' must be a tensor [N] with N = {n}")
    file_vocab = payload.get("vocab_size")
    vocab = int(file_vocab) if file_vocab is not None else vocab_size
    if vocab is None:
        vocab = int(sequences.max()) + 1 if n else 1
    if n and (int(sequences.min()) < 0 or int(sequences.max()) >= vocab):
        raise UserError(
            f"{path}: token ids span [{int(sequences.min())}, {int(sequences.max())}] but the vocabulary has {vocab} tokens"
        )
    sources = list(payload.get("sources") or [])
    if sources and len(sources) != n:
        raise UserError(f"{path}: {len(sources)} sources for {n} windows")
    if not sources:
        sources = [f"{path.stem}:{i}" for i in range(n)]
    return TokenSplit(sequences=sequences, labels=labels.to(torch.int64), vocab_size=vocab, sources=sources)


def load_token_dataset(data_dir: str | Path, splits: Sequence[str] = SPLITS) -> dict[str, TokenSplit]:
    """Load every split and check they agree on window length and vocabulary."""
    paths = split_files(data_dir, "--data_dir", splits)
    loaded = {s: load_token_split(path) for s, path in paths.items()}
    vocab = max(split.vocab_size for split in loaded.values())
    lengths = {s: split.sequences.shape[1] for s, split in loaded.items()}
    if len(set(lengths.values())) != 1:
        raise UserError(f"--data_dir {data_dir}: splits have different window lengths {lengths}")
    for name, split in loaded.items():
        if len(split) == 0:
            raise UserError(f"{paths[name]}: no windows")
        split.vocab_size = vocab
    return loaded

"""The only code of quixer_rna.quantum that knows how run folders and token files look on disk; everything
else takes a model, token tensors and counts.

Formats read (as train_quixer_hybrid.py and the token stages wrote them when this module was written):
    run folder   checkpoint_best.pt (else checkpoint_last.pt): quixer_rna.checkpoint's format, whose
                 "identity" names model_name, model_config, vocab_size, context_length (and task) and whose
                 "model" is the state dict
    token folder {train,test}.pt: a dict with "sequences" int64 [N, T+1] (T context tokens, then the
                 target) and "vocab_size"
The two writers at the end make such folders for tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from .. import checkpoint as ckpt
from ..errors import UserError
from ..models import build_model
from ..runio import atomic_torch_save, read_torch


def load_trained_quixer(run_dir: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The trained QuixerModel of a train_quixer_hybrid.py run folder (its best-val checkpoint, else the
    last one), in eval mode on CPU, and what the stage reports about it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"--run_dir {run_dir}: folder not found")
    path = next((run_dir / name for name in (ckpt.BEST, ckpt.LAST) if (run_dir / name).is_file()), None)
    if path is None:
        raise UserError(f"--run_dir {run_dir}: not a Quixer run folder (no {ckpt.BEST} or {ckpt.LAST}); "
                        "pass the --output_dir of train_quixer_hybrid.py")
    state = ckpt.load_checkpoint(path)
    identity = state.get("identity") if isinstance(state.get("identity"), dict) else {}
    name = identity.get("model_name")
    if name != "quixer":
        raise UserError(f"--run_dir {run_dir}: {path.name} holds a {name!r} model, not a Quixer model")
    task = identity.get("task", "autoregressive")
    if task != "autoregressive":
        raise UserError(f"--run_dir {run_dir}: trained for the {task} task; this stage scores next-token prediction")
    try:
        vocab = int(identity["vocab_size"])
        width = max(vocab, int(identity.get("num_outputs", vocab)))
        config = dict(identity["model_config"])
        model = build_model("quixer", width, int(identity["context_length"]), config)
        model.load_state_dict(state["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise UserError(f"--run_dir {run_dir}: {path.name} does not load as a Quixer model "
                        f"({type(exc).__name__}: {str(exc)[:160]})") from exc
    model.eval()
    info = {
        "run_dir": str(run_dir),
        "checkpoint": path.name,
        "model_name": name,
        "model_config": config,
        "vocab_size": vocab,
        "context_length": int(identity["context_length"]),
    }
    return model, info


def _split_sequences(data_dir: str | Path, split: str) -> tuple[torch.Tensor, int]:
    folder = Path(data_dir)
    if not folder.is_dir():
        raise UserError(f"--data_dir {folder}: folder not found")
    path = folder / f"{split}.pt"
    if not path.is_file():
        raise UserError(f"--data_dir {folder}: no {split}.pt; give the token folder the run was trained on")
    payload = read_torch(path, "token file")
    sequences = payload.get("sequences") if isinstance(payload, dict) else None
    if not isinstance(sequences, torch.Tensor) or sequences.dim() != 2 or sequences.dtype.is_floating_point:
        raise UserError(f"{path}: expected a dict with integer 'sequences' [N, L]")
    sequences = sequences.long()
    vocab = payload.get("vocab_size")
    vocab = int(vocab) if vocab is not None else (int(sequences.max()) + 1 if sequences.numel() else 1)
    return sequences, vocab


def load_test_windows(data_dir: str | Path, selection: Sequence[int]) -> torch.Tensor:
    """Test windows int64 [B, T+1] (T context tokens, then the target) at the given test-set indices."""
    sequences, _ = _split_sequences(data_dir, "test")
    total = int(sequences.shape[0])
    bad = [i for i in selection if not 0 <= i < total]
    if bad:
        raise UserError(f"--windows: window {bad[0]} is out of range; the test split of {data_dir} has {total} "
                        f"windows (0..{total - 1})")
    return sequences[torch.as_tensor(list(selection), dtype=torch.long)].clone()


def train_target_counts(data_dir: str | Path) -> torch.Tensor:
    """How often each token is the target of a train window: int64 [V] (V = the token vocabulary)."""
    sequences, vocab = _split_sequences(data_dir, "train")
    return torch.bincount(sequences[:, -1], minlength=vocab)


def save_token_windows(data_dir: str | Path, split: str, sequences: torch.Tensor, vocab_size: int) -> None:
    """Write one split in the format the readers above take (for tests and small experiments)."""
    payload = {"sequences": torch.as_tensor(sequences, dtype=torch.int64).contiguous(),
               "labels": torch.zeros(len(sequences), dtype=torch.int64), "vocab_size": int(vocab_size)}
    atomic_torch_save(payload, Path(data_dir) / f"{split}.pt")


def save_quixer_run(run_dir: str | Path, model: torch.nn.Module, model_config: dict[str, Any],
                    vocab_size: int, context_length: int) -> Path:
    """Write `model` as the best checkpoint of a Quixer run folder (for tests and small experiments)."""
    identity = {"model_name": "quixer", "model_config": dict(model_config), "vocab_size": int(vocab_size),
                "num_outputs": int(vocab_size), "context_length": int(context_length), "task": "autoregressive"}
    path = Path(run_dir) / ckpt.BEST
    ckpt.save_checkpoint(path, {"identity": identity, "model": model.state_dict()})
    return path

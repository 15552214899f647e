"""The only code of quixer_rna.quantum that knows how run folders and token files look on disk; everything
else takes a model, token tensors and counts.

Formats read:
    run folder    checkpoint_best.pt (else checkpoint_last.pt): quixer_rna.checkpoint's format, whose
                  "identity" names model_name, model_config, vocab_size and context_length, and whose "model"
                  is the state dict
    token folder  quixer_rna.formats.tokens (the windows are gathered from its k-mer stream)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .. import checkpoint as ckpt
from ..errors import UserError
from ..formats.tokens import open_tokens
from ..models import build_model


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
    try:
        vocab = int(identity["vocab_size"])
        config = dict(identity["model_config"])
        model = build_model("quixer", vocab, int(identity["context_length"]), config)
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


def load_test_windows(data_dir: str | Path, selection: Sequence[int]) -> torch.Tensor:
    """Test windows int64 [B, T+1] (T context tokens, then the target) at the given test window numbers,
    gathered from the token folder's k-mer stream."""
    test = open_tokens(data_dir, splits=("test",))["test"]
    total = test.num_windows
    bad = [i for i in selection if not 0 <= i < total]
    if bad:
        raise UserError(f"--windows: window {bad[0]} is out of range; the test split of {data_dir} has {total} "
                        f"windows (0..{total - 1})")
    return test.batch(torch.as_tensor(list(selection), dtype=torch.long)).cpu()


def train_target_counts(data_dir: str | Path) -> torch.Tensor:
    """How often each token is the target of a train window: int64 [V] (V = the token vocabulary)."""
    return open_tokens(data_dir, splits=("train",))["train"].target_counts()


def sample_test_windows(data_dir: str | Path, per_transcript: int, seed: int) -> tuple[list[int], np.ndarray, dict]:
    """A seeded sample stratified by transcript: `per_transcript` test windows drawn uniformly without
    replacement from every test transcript (all of a transcript's windows when it has fewer), in test-set
    order; and each window's weight, (its transcript's windows / windows drawn from it), normalised to mean
    1, so weighted means estimate the mean over all test windows."""
    test = open_tokens(data_dir, splits=("test",))["test"]
    transcripts = test.window_transcripts()
    if transcripts.size == 0:
        raise UserError(f"--data_dir {data_dir}: the test split has no windows to sample")
    rng = np.random.default_rng(seed)
    chosen, weights = [], []
    for row in np.unique(transcripts):
        members = np.flatnonzero(transcripts == row)
        take = min(per_transcript, members.size)
        chosen.append(np.sort(rng.choice(members, size=take, replace=False)))
        weights.append(np.full(take, members.size / take))
    order = np.argsort(np.concatenate(chosen), kind="stable")
    windows = np.concatenate(chosen)[order]
    weight = np.concatenate(weights)[order]
    info = {"per_transcript": per_transcript, "transcripts": int(len(chosen)), "test_windows": int(transcripts.size),
            "seed": seed, "weights": "windows of the transcript / windows drawn from it, normalised to mean 1"}
    return [int(w) for w in windows], weight / weight.mean(), info

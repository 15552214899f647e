"""One checkpoint format for every model: only tensors and plain types, so a checkpoint loads with
`torch.load(weights_only=True)` (no pickled code runs), and everything needed to resume a run
exactly - weights, optimiser, schedule, every rank's RNGs, position within the epoch, history.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import UserError
from .runio import atomic_torch_save, read_torch

FORMAT = "quixer-rna-checkpoint"
VERSION = 2
LAST = "checkpoint_last.pt"
BEST = "checkpoint_best.pt"


def capture_rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """Every RNG this process draws from (dropout uses torch's, on its device), as tensors and plain types."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npst = state["numpy"]
    np.random.set_state(
        (npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["cached_gaussian"])
    )
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    atomic_torch_save({"format": FORMAT, "version": VERSION, **state}, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint on CPU; a corrupt or foreign file is a one-line UserError."""
    path = Path(path)
    state = read_torch(path, "checkpoint", "; pass --overwrite to start afresh")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path}: not a quixer-rna checkpoint; pass --overwrite to start afresh")
    if state.get("version") != VERSION:
        raise UserError(f"{path}: checkpoint version {state.get('version')} is not {VERSION}; pass --overwrite")
    return state


def describe_mismatch(saved: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> str | None:
    """The settings that differ between a saved run and the one asked for, as 'key: old -> new'
    (nested settings such as a model's config are named 'model_config.qubits')."""
    diffs = []
    for key in sorted(set(saved) | set(wanted)):
        old, new = saved.get(key), wanted.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            nested = describe_mismatch(old, new, f"{prefix}{key}.")
            if nested:
                diffs.append(nested)
        elif old != new:
            diffs.append(f"{prefix}{key}: {old!r} -> {new!r}")
    return "; ".join(diffs) if diffs else None

"""Reading the 3n expectations from finite shots, and the test metrics that result.

Three measurement settings read <X_i>, <Y_i>, <Z_i> of all n data qubits: before measuring in the
computational basis, every qubit gets H (X setting) or H S^dagger (Y setting; nothing for Z). Each
setting keeps S shots (after post-selection), drawn from the exact post-selected state after the
readout layer with a seeded numpy Generator; <P_i> is the mean of +1/-1 over the kept shots. A kept
shot costs 1/p raw shots on average when post-selection succeeds with probability p, so a prediction
costs 3 S / p raw shots.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from ..metrics import score_sums, summarize, window_scores

SETTINGS = ("X", "Y", "Z")
_H = np.array([[1.0, 1.0], [1.0, -1.0]], dtype=np.complex128) / np.sqrt(2.0)
_ROTATIONS = {"X": _H, "Y": _H @ np.diag([1.0, -1.0j]), "Z": np.eye(2, dtype=np.complex128)}


def rotate_all(states: np.ndarray, qubits: int, gate: np.ndarray) -> np.ndarray:
    """Apply the same 2x2 gate to every qubit of states [W, 2**n] (wire 0 the most significant bit)."""
    w = states.shape[0]
    tensor = states.reshape((w,) + (2,) * qubits)
    for axis in range(1, qubits + 1):
        tensor = np.moveaxis(np.tensordot(gate, tensor, axes=([1], [axis])), 0, axis)
    return tensor.reshape(w, 2**qubits)


def setting_probabilities(states: np.ndarray, qubits: int) -> np.ndarray:
    """[3, W, 2**n]: outcome probabilities of the X, Y and Z settings for normalised states [W, 2**n]."""
    probs = np.stack([np.abs(rotate_all(states, qubits, _ROTATIONS[s])) ** 2 for s in SETTINGS])
    return probs / probs.sum(-1, keepdims=True)


def _signs(qubits: int) -> np.ndarray:
    """[2**n, n]: the +1/-1 eigenvalue of Z_i on each computational basis state."""
    index = np.arange(2**qubits)[:, None]
    bits = (index >> (qubits - 1 - np.arange(qubits))[None, :]) & 1
    return 1.0 - 2.0 * bits


def expectations_from_frequencies(freq: np.ndarray, qubits: int) -> np.ndarray:
    """[3, W, 2**n] outcome frequencies of the three settings -> [W, 3n] ordered X_0..X_{n-1}, Y.., Z..."""
    per_setting = freq @ _signs(qubits)                       # [3, W, n]
    return np.concatenate(list(per_setting), axis=-1)


def exact_expectations(states: np.ndarray, qubits: int) -> np.ndarray:
    return expectations_from_frequencies(setting_probabilities(states, qubits), qubits)


def sampled_expectations(states: np.ndarray, qubits: int, shots: int, rng: np.random.Generator) -> np.ndarray:
    """Each setting's expectations from `shots` kept shots per window."""
    probs = setting_probabilities(states, qubits)
    counts = rng.multinomial(shots, probs)                  # [3, W, 2**n]
    return expectations_from_frequencies(counts / shots, qubits)


def raw_shots(kept_shots_per_setting: float, success: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean over windows (weighted, if given) of the raw shots one prediction needs: 3 settings x S kept
    shots / p_w."""
    return float(np.average(3.0 * kept_shots_per_setting / np.asarray(success), weights=weights))


HeadFn = Callable[[np.ndarray], torch.Tensor]


def head_function(model: torch.nn.Module) -> HeadFn:
    """features [W, 3n] (float64 numpy) -> logits, through the model's classical head (its own dtype)."""
    param = next(model.head.parameters())

    @torch.no_grad()
    def head(features: np.ndarray) -> torch.Tensor:
        was_training = model.training
        model.eval()
        try:
            return model.head(torch.as_tensor(features, dtype=param.dtype, device=param.device)).cpu()
        finally:
            model.train(was_training)

    return head


def score_metrics(logits: torch.Tensor, targets: torch.Tensor, weights: np.ndarray | None = None) -> dict[str, float]:
    """Cross-entropy (nats), perplexity, accuracy, top-5 accuracy: the trainer's window_scores/summarize;
    with per-window weights (a stratified sample's), weighted means of the same scores."""
    scores = window_scores(logits, targets)
    if weights is not None:
        w = torch.as_tensor(np.asarray(weights, dtype=np.float64) / np.sum(weights) * len(weights))
        scores = {"nll": scores["nll"].double() * w, "correct": scores["correct"].double() * w,
                  "top5": scores["top5"].double() * w}
    summary = summarize(score_sums(scores))
    return {
        "cross_entropy": summary["loss"],
        "perplexity": summary["perplexity"],
        "accuracy": summary["accuracy"],
        "top5_accuracy": summary["top5_accuracy"],
    }


def shots_table(head: HeadFn, states: np.ndarray, success: np.ndarray, qubits: int, targets: torch.Tensor,
                shot_counts: Sequence[int], seed: int, weights: np.ndarray | None = None) -> list[dict]:
    """Test metrics when each setting keeps S shots, for each S; one Generator seeded with `seed` draws all."""
    rng = np.random.default_rng(seed)
    rows = []
    for shots in shot_counts:
        features = sampled_expectations(states, qubits, shots, rng)
        rows.append({"shots": int(shots), **score_metrics(head(features), targets, weights),
                     "raw_shots_per_prediction": raw_shots(shots, success, weights)})
    return rows

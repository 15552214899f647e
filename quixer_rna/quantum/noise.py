"""Two-qubit gate noise: the global depolarising approximation, its check against PennyLane's
default.mixed, and the error rate at which the model's gain over the unigram is gone.

Noise model: every two-qubit gate (CNOT after decomposition) fails with probability p, a failure being
a uniformly random non-identity two-qubit Pauli (the two-qubit depolarising channel with Kraus operators
sqrt(1-p) I and sqrt(p/15) P for the 15 other Paulis P). So no gate fails with probability
F = (1-p)^N_2q.

Global approximation: any failure leaves the whole register maximally mixed. With a ancillas the
post-selection on |0...0> then succeeds with probability F p + (1-F) 2^-a, and every Pauli expectation of
the kept data state is the exact one times F p / (F p + (1-F) 2^-a) (the mixed part contributes 0).
N_2q and a are those of the fresh-register circuit, readout layer included.

`mixed_state_comparison` simulates the decomposed circuit with that channel after every CNOT on
default.mixed (small models only: a density matrix of 4^total entries) and reports how far the
approximation is from it. On 4-6 qubit circuits (58-166 CNOTs) both the success probability and the
expectations of the approximation were within 0.12-0.54 (1 - F) of default.mixed, always on the
pessimistic side: a local Pauli error often leaves the post-selected state intact (e.g. a Z on a control).
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Sequence

import numpy as np
import torch

from .circuit import make_layout, single_threaded_blas
from .params import WindowCircuit
from .resources import decomposed_operations
from .shots import HeadFn, score_metrics

# default.mixed holds 4^total complex numbers and applies 16 Kraus operators per CNOT: about 0.6 s per
# run at 6 qubits and ~170 CNOTs, but 13 s at 8 qubits and ~330 CNOTs, so the stage stops at 6.
MIXED_MAX_QUBITS = 6
_PAULIS = {
    "I": np.eye(2, dtype=np.complex128),
    "X": np.array([[0, 1], [1, 0]], dtype=np.complex128),
    "Y": np.array([[0, -1j], [1j, 0]], dtype=np.complex128),
    "Z": np.diag([1.0, -1.0]).astype(np.complex128),
}


def fidelity(p: float, two_qubit_gates: int) -> float:
    """Probability that none of the two-qubit gates fails."""
    return float((1.0 - p) ** two_qubit_gates)


def depolarized(features: np.ndarray, success: np.ndarray, p: float, two_qubit_gates: int,
                ancillas: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Global approximation: (success probabilities [W], expectations [W, 3n], fidelity F)."""
    f = fidelity(p, two_qubit_gates)
    noisy_success = f * success + (1.0 - f) * 2.0 ** (-ancillas)
    scale = f * success / noisy_success
    return noisy_success, features * scale[:, None], f


def noise_table(head: HeadFn, features: np.ndarray, success: np.ndarray, targets: torch.Tensor,
                two_qubit_gates: int, ancillas: int, rates: Sequence[float],
                weights: np.ndarray | None = None) -> list[dict]:
    rows = []
    for p in rates:
        noisy_success, noisy, f = depolarized(features, success, p, two_qubit_gates, ancillas)
        rows.append({
            "p_2q": float(p),
            "fidelity": f,
            "success_probability": float(np.average(noisy_success, weights=weights)),
            "expectation_scale": float(np.average(f * success / noisy_success, weights=weights)),
            **score_metrics(head(noisy), targets, weights),
        })
    return rows


def bisect_break_even(ce: Callable[[float], float], unigram_ce: float, low: float = 1e-12, steps: int = 60,
                      high: float = 1.0) -> tuple[float | None, str | None]:
    """The error rate p at which ce(p) rises to unigram_ce, by bisection on log10 p between `low` and `high`
    (ce is taken to rise with p); (None, reason) when there is none in that range."""
    at_zero = ce(0.0)
    if not at_zero < unigram_ce:
        return None, (f"the model does not beat the unigram even without noise "
                      f"(cross-entropy {at_zero:.4f} >= unigram {unigram_ce:.4f})")
    if ce(high) < unigram_ce:
        if high < 1.0:
            return None, f"not reached below p = {high:.3g}, the largest rate the simulated errors cover"
        return None, ("the model stays below the unigram's cross-entropy even with every gate failing "
                      "(all expectations 0: the head alone beats the unigram)")
    if not ce(low) < unigram_ce:
        return low, f"the gain is gone already at p = {low:g}"
    lo, hi = math.log10(low), math.log10(high)
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if ce(10.0**mid) < unigram_ce:
            lo = mid
        else:
            hi = mid
    return float(10.0 ** (0.5 * (lo + hi))), None


def break_even_p2q(head: HeadFn, features: np.ndarray, success: np.ndarray, targets: torch.Tensor,
                   two_qubit_gates: int, ancillas: int, unigram_ce: float, low: float = 1e-12, steps: int = 60,
                   weights: np.ndarray | None = None) -> tuple[float | None, str | None]:
    """The two-qubit error rate p at which the test cross-entropy (global approximation) rises to the
    unigram's; (None, reason) when there is none."""

    def ce(p: float) -> float:
        _, noisy, _ = depolarized(features, success, p, two_qubit_gates, ancillas)
        return score_metrics(head(noisy), targets, weights)["cross_entropy"]

    return bisect_break_even(ce, unigram_ce, low, steps)


def two_qubit_depolarizing_kraus(p: float) -> list[np.ndarray]:
    """Kraus operators of 'fails with probability p': sqrt(1-p) I, sqrt(p/15) P for the other 15 Paulis."""
    ops = [math.sqrt(1.0 - p) * np.eye(4, dtype=np.complex128)]
    for a, b in itertools.product("IXYZ", repeat=2):
        if a + b != "II":
            ops.append(math.sqrt(p / 15.0) * np.kron(_PAULIS[a], _PAULIS[b]))
    return ops


def _data_expectations(rho: np.ndarray, qubits: int) -> np.ndarray:
    """<X_i>, <Y_i>, <Z_i> (X_0.., Y.., Z..) of a normalised data density matrix."""
    out = []
    for name in "XYZ":
        for wire in range(qubits):
            op = np.array([[1.0]], dtype=np.complex128)
            for w in range(qubits):
                op = np.kron(op, _PAULIS[name] if w == wire else _PAULIS["I"])
            out.append(float(np.trace(rho @ op).real))
    return np.array(out)


def mixed_state_run(wc: WindowCircuit, p: float, operations: list | None = None,
                    select: str = "reduced") -> tuple[float, np.ndarray]:
    """(post-selection success probability, data expectations after readout) on default.mixed with the
    depolarising channel after every two-qubit gate of the decomposed fresh-register circuit."""
    import pennylane as qml

    lay = make_layout(wc.qubits, wc.tokens, wc.degree, "fresh")
    ops = decomposed_operations(wc, "fresh", readout=True, select=select) if operations is None else operations
    kraus = two_qubit_depolarizing_kraus(p)
    device = qml.device("default.mixed", wires=lay.total)

    @qml.qnode(device)
    def run():
        for op in ops:
            qml.apply(op)
            if len(op.wires) == 2 and p > 0:
                qml.QubitChannel(kraus, wires=op.wires)
        return qml.density_matrix(wires=range(lay.total))

    n, a = wc.qubits, lay.total - wc.qubits
    with single_threaded_blas():
        rho = np.asarray(run()).reshape(2**n, 2**a, 2**n, 2**a)[:, 0, :, 0]
    success = float(np.trace(rho).real)
    return success, _data_expectations(rho / success, n)


def mixed_state_comparison(wc: WindowCircuit, success: float, features: np.ndarray,
                           rates: Sequence[float], select: str = "reduced") -> list[dict]:
    """The global approximation against default.mixed for one window, per error rate."""
    lay = make_layout(wc.qubits, wc.tokens, wc.degree, "fresh")
    ops = decomposed_operations(wc, "fresh", readout=True, select=select)
    n2q = sum(len(op.wires) == 2 for op in ops)
    ancillas = lay.total - wc.qubits
    rows = []
    for p in rates:
        mixed_success, mixed_features = mixed_state_run(wc, p, ops)
        approx_success, approx_features, f = depolarized(features[None, :], np.array([success]), p, n2q, ancillas)
        rows.append({
            "p_2q": float(p),
            "fidelity": f,
            "two_qubit_gates": n2q,
            "success_probability_mixed": mixed_success,
            "success_probability_approx": float(approx_success[0]),
            "success_probability_error": abs(mixed_success - float(approx_success[0])),
            "max_expectation_error": float(np.abs(mixed_features - approx_features[0]).max()),
            "max_expectation_shift": float(np.abs(mixed_features - features).max()),
        })
    return rows

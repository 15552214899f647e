"""Noisy runs of a window's circuit as sampled Pauli-error trajectories, on the measure-and-reset layout.

Noise model (the same as quantum.noise's): every two-qubit gate fails with probability p, a failure being
one of the 15 non-identity two-qubit Paulis, uniformly, applied after the gate. One-qubit gates,
measurements and resets are perfect (on today's trapped-ion devices their errors are 10-40x smaller than
the two-qubit gates'; readout error on 18-20 measurements is small beside thousands of two-qubit gates).

A trajectory is the circuit with a given set of errors. It is simulated as a pure state on
lightning.qubit's state-vector kernels (PennyLane's C++ simulator, called gate by gate through its
StateVectorC128 binding: PennyLane's own execute adds ~1 s of Python per 30k gates). Post-selection is a
projection, not a sampled measurement: at each MEASURE_RESET the index register is projected on |0>, the
squared norm multiplies the trajectory's weight, and the normalised state goes on (the register is then
already reset); at the end the degree register is projected the same way. The weight is the probability
that this trajectory passes every post-selection, and the data state after the readout layer gives the
3n expectations exactly (no shot noise).

Stratified by the number of errors k (`TrajectoryStats`): given k errors, their places are uniform over
the N two-qubit gates and their Paulis uniform, whatever p is. So trajectories are drawn once per k (every
k up to 8, then 8 more counts spaced geometrically up to K, the means interpolated linearly in k between
them: `error_grid`) and any p is then a binomial mixture:
    success(p)  = B_0 s_0 + sum_k B_k E[w | k] + R E[w | K]
    numer(p)    = B_0 s_0 f_0 + sum_k B_k E[w f | k] + R E[w f | K]       expectations(p) = numer / success
with B_k = Binom(k; N, p), R = 1 - sum_{k <= K} B_k the tail (carried by the largest stratum; reported),
and k = 0 the exact circuit (s_0, f_0: the simulator's). p = 0 is exact by construction.
Trajectories with errors share the error-free prefix: the exact run keeps checkpoints, and each
trajectory starts from the last one before its first error.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

from .gatelist import MEASURE_RESET, GateList
from .shots import exact_expectations

PAULI_PAIRS = [pair for pair in itertools.product("IXYZ", repeat=2) if pair != ("I", "I")]
CHECKPOINTS = 32
DENSE_ERRORS = 8      # error counts simulated one by one
SPARSE_POINTS = 8     # further error counts, geometrically spaced up to max_errors


class LightningRunner:
    """Simulates one GateList with Pauli errors inserted after chosen gates, projecting on post-selection."""

    def __init__(self, gate_list: GateList):
        from pennylane_lightning.lightning_qubit_ops import StateVectorC128

        self.layout = gate_list.layout
        self.total = gate_list.layout.total
        self.sv = StateVectorC128(self.total)
        self._pauli = {name: getattr(self.sv, name) for name in ("PauliX", "PauliY", "PauliZ")}
        methods = {name: getattr(self.sv, name) for name in {g.name for g in gate_list.gates} if name != MEASURE_RESET}
        self.steps: list = []
        pending: list[int] = []
        for gate in gate_list.gates:
            if gate.name == MEASURE_RESET:
                pending.extend(gate.wires)
                continue
            if pending:
                self.steps.append(("project", self._mask(pending)))
                pending = []
            self.steps.append((methods[gate.name], list(gate.wires), [] if gate.angle is None else [gate.angle]))
        if pending:
            self.steps.append(("project", self._mask(pending)))
        # the gate positions (in gate_list.gates) of each step, to place errors by gate position
        self.step_of_gate = np.full(len(gate_list.gates), -1, dtype=np.int64)
        step = 0
        for position, gate in enumerate(gate_list.gates):
            while self.steps[step][0] == "project":
                step += 1
            if gate.name != MEASURE_RESET:
                self.step_of_gate[position] = step
                step += 1
        self.final_mask = self._mask(self.layout.ancillas)
        self.two_qubit = gate_list.two_qubit_positions
        self._checkpoints: list[tuple[int, np.ndarray, float]] = []

    def _mask(self, wires) -> np.ndarray:
        """Basis states whose `wires` are all 0 (wire 0 the most significant bit)."""
        index = np.arange(2**self.total)
        bad = np.zeros(2**self.total, dtype=bool)
        for w in wires:
            bad |= ((index >> (self.total - 1 - w)) & 1).astype(bool)
        return ~bad

    def _state(self) -> np.ndarray:
        out = np.zeros(2**self.total, dtype=np.complex128)
        self.sv.getState(out)
        return out

    def _project(self, mask: np.ndarray) -> float:
        state = self._state()
        state[~mask] = 0.0
        norm2 = float(np.vdot(state, state).real)
        if norm2 > 0:
            self.sv.updateData(state / np.sqrt(norm2))
        return norm2

    def run(self, errors: dict[int, tuple[str, str]] | None = None,
            keep_checkpoints: bool = False) -> tuple[float, np.ndarray]:
        """(weight, normalised data state after the readout layer) with errors {step: (pauli on the gate's
        first wire, on its second)}; weight 0 (and a zero state) when post-selection cannot pass."""
        errors = errors or {}
        first = min(errors) if errors else len(self.steps)
        begin, weight = 0, 1.0
        start = None
        for checkpoint in ([] if keep_checkpoints else self._checkpoints):
            if checkpoint[0] <= first:
                start = checkpoint
        if start is not None:
            begin, state, weight = start
            self.sv.updateData(state)
        else:
            self.sv.resetStateVector()
        if keep_checkpoints:
            self._checkpoints = [(0, self._state(), 1.0)]
            every = max(1, len(self.steps) // CHECKPOINTS)
        for index in range(begin, len(self.steps)):
            if keep_checkpoints and index and index % every == 0:
                self._checkpoints.append((index, self._state(), weight))
            step = self.steps[index]
            if step[0] == "project":
                weight *= self._project(step[1])
                if weight == 0.0:
                    return 0.0, np.zeros(2**len(self.layout.data), dtype=np.complex128)
                continue
            step[0](step[1], False, step[2])
            if index in errors:
                for pauli, wire in zip(errors[index], step[1]):
                    if pauli != "I":
                        self._pauli["Pauli" + pauli]([wire], False, [])
        weight *= self._project(self.final_mask)
        data = self._state().reshape(2**len(self.layout.data), -1)[:, 0]
        return weight, data

    def sample_errors(self, k: int, rng: np.random.Generator) -> dict[int, tuple[str, str]]:
        """k distinct two-qubit gates, uniformly, each with a uniformly drawn non-identity Pauli pair."""
        chosen = rng.choice(len(self.two_qubit), size=k, replace=False)
        pairs = rng.integers(0, len(PAULI_PAIRS), size=k)
        return {int(self.step_of_gate[self.two_qubit[c]]): PAULI_PAIRS[p] for c, p in zip(chosen, pairs)}


def error_grid(max_errors: int, dense: int = DENSE_ERRORS, sparse: int = SPARSE_POINTS) -> np.ndarray:
    """The error counts k simulated: every k up to `dense`, then `sparse` points spaced geometrically up to
    max_errors (the per-k means change slowly there and are interpolated in between)."""
    if max_errors <= dense:
        return np.arange(1, max_errors + 1)
    tail = np.unique(np.round(np.geomspace(dense, max_errors, sparse + 1)).astype(int))
    return np.unique(np.concatenate([np.arange(1, dense + 1), tail]))


@dataclass
class TrajectoryStats:
    """Per-window stratified trajectories: weights [W, K', S] and weighted expectations [W, K', S, 3n]
    (w * f) for the simulated error counts `errors` [K'] (S trajectories each); the exact (k = 0) success [W]
    and expectations [W, 3n]. Means at error counts not simulated are interpolated linearly in k."""

    two_qubit_gates: int
    errors: np.ndarray
    weights: np.ndarray
    weighted_features: np.ndarray
    exact_success: np.ndarray
    exact_features: np.ndarray

    @property
    def max_errors(self) -> int:
        return int(self.errors[-1])

    def strata(self, p: float) -> tuple[np.ndarray, float]:
        """(B_0..B_K, tail mass R) for error rate p."""
        pmf = binom.pmf(np.arange(self.max_errors + 1), self.two_qubit_gates, p)
        return pmf, float(max(0.0, 1.0 - pmf.sum()))

    def max_rate(self, tail: float = 0.05) -> float:
        """The largest p at which runs with more errors than simulated carry at most `tail` (bisection)."""
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if self.strata(mid)[1] <= tail else (lo, mid)
        return lo

    def _mixture(self, b: np.ndarray) -> np.ndarray:
        """Weights over the simulated counts that equal weights b over k = 1..K when the means at the counts
        in between are interpolated linearly (the counts start at 1)."""
        if len(self.errors) == 1:
            return np.array([b.sum()])
        every = np.arange(1, self.max_errors + 1)
        right = np.clip(np.searchsorted(self.errors, every), 1, len(self.errors) - 1)
        left = right - 1
        frac = np.clip((every - self.errors[left]) / (self.errors[right] - self.errors[left]), 0.0, 1.0)
        mix = np.zeros(len(self.errors))
        np.add.at(mix, left, b * (1.0 - frac))
        np.add.at(mix, right, b * frac)
        return mix

    def noisy(self, p: float, windows: np.ndarray | None = None,
              samples: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(success probabilities [W], expectations [W, 3n]) at p. `windows` and `samples` (index arrays,
        [W'] and [W', K', S]) pick a bootstrap replicate; by default every window and trajectory."""
        windows = np.arange(self.weights.shape[0]) if windows is None else windows
        w, wf = self.weights[windows], self.weighted_features[windows]
        if samples is not None:
            w = np.take_along_axis(w, samples, axis=2)
            wf = np.take_along_axis(wf, samples[..., None], axis=2)
        pmf, tail = self.strata(p)
        b = pmf[1:].copy()
        b[-1] += tail
        mix = self._mixture(b)
        mean_w, mean_wf = w.mean(axis=2), wf.mean(axis=2)                      # [W', K'], [W', K', 3n]
        s0, f0 = self.exact_success[windows], self.exact_features[windows]
        success = pmf[0] * s0 + mean_w @ mix
        numer = pmf[0] * s0[:, None] * f0 + np.einsum("wkf,k->wf", mean_wf, mix)
        return success, numer / np.maximum(success, 1e-300)[:, None]


def simulate_strata(runner: LightningRunner, errors: np.ndarray, per_stratum: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """One window: (weights [K', S], weighted expectations [K', S, 3n], exact weight, exact expectations)
    for the error counts `errors`."""
    n = len(runner.layout.data)
    exact_weight, exact_state = runner.run(keep_checkpoints=True)
    exact = exact_expectations(exact_state[None, :] / np.linalg.norm(exact_state), n)[0]
    weights = np.zeros((len(errors), per_stratum))
    weighted = np.zeros((len(errors), per_stratum, 3 * n))
    for i, k in enumerate(errors):
        for s in range(per_stratum):
            weight, state = runner.run(runner.sample_errors(min(int(k), len(runner.two_qubit)), rng))
            weights[i, s] = weight
            if weight > 0:
                weighted[i, s] = weight * exact_expectations(state[None, :] / np.linalg.norm(state), n)[0]
    return weights, weighted, exact_weight, exact


def check_measure_reset(states, positions, select: str = "reduced", tolerance: float = 1e-6) -> dict:
    """The check of quantum.circuit.check_windows on the measure-and-reset layout, for circuits whose fresh
    registers are too many qubits for a state vector: the error-free trajectory (projections in place of
    the mid-circuit measurements, gates as quantum.gatelist decomposes them, global phases dropped) against
    the simulator: success probability, the data state after the readout layer (after the best global
    phase) and the 3n expectations."""
    from .gatelist import GateListBuilder
    from .params import window_circuit

    builder = GateListBuilder()
    rows = []
    for pos in positions:
        runner = LightningRunner(builder.build(window_circuit(states, pos), "measure_reset", True, select))
        weight, data = runner.run()
        data = data / np.linalg.norm(data)
        overlap = np.vdot(data, states.readout_state[pos])
        aligned = data * (overlap / abs(overlap)) if abs(overlap) > 0 else data
        features = exact_expectations(data[None, :], len(runner.layout.data))[0]
        rows.append({
            "state_error_phase_aligned": float(np.abs(aligned - states.readout_state[pos]).max()),
            "success_probability_circuit": weight,
            "success_probability_simulator": float(states.success[pos]),
            "success_probability_error": abs(weight - float(states.success[pos])),
            "expectation_error": float(np.abs(features - states.features[pos]).max()),
        })
    keys = ("state_error_phase_aligned", "success_probability_error", "expectation_error")
    worst = {key: max(row[key] for row in rows) for key in keys}
    return {
        "status": "passed" if all(value <= tolerance for value in worst.values()) else "failed",
        "device": "lightning.qubit (state-vector kernels)",
        "layout": "measure_reset",
        "select": select,
        "tolerance": tolerance,
        "global_phase": "compared after the best global phase (the gate list drops global phases)",
        "windows_checked": len(rows),
        **{f"max_{key}": value for key, value in worst.items()},
        "per_window": rows,
    }

"""What running the model on hardware would take, for quixer_circuit.py: trajectory noise, the device files,
the per-target cost, a noisy end-to-end device run and the fault-tolerant estimate (resources.json keys
"trajectories", "qasm", "targets", "device_runs", "fault_tolerant").

Per target (quantum.targets) the cost table adds: the error rate per logical CNOT that gives the compiled
circuit's estimated success, p_eq = 1 - F^(1/N) (N: the CNOTs of the uncompiled circuit); the success
probability and cross-entropy there (from the trajectories when they ran, else the global approximation);
raw shots per prediction, 3 / (eps^2 p) averaged over windows, at that success; the break-even rate
translated to the target's native two-qubit gate, 1 - (1 - p*)^(N / N_native), for trajectories and the
global approximation (the "half_signal" criterion of quantum.noise_study, which is defined for every model:
the expectations keep half their signal; the cross-entropy criterion can have no crossing); and, for
Quantinuum, the HQC cost of one prediction at those shots.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .config import CircuitConfig
from .device_run import noisy_device_run
from .export import write_qasm, to_qiskit
from .fault_tolerant import fault_tolerant_estimate
from .gatelist import GateListBuilder
from .noise import depolarized
from .noise_study import global_half_signal_p2q, simulate_windows, trajectory_report
from .params import QuixerStates, window_circuit
from .select import unused_code
from .shots import HeadFn, score_metrics
from .targets import hqc, target_costs
from .trajectories import error_grid

LOG = logging.getLogger("quixer_rna.quantum")
QASM_FOLDER = "qasm"


def _noisy_at(p: float, stats, states: QuixerStates, n2q: int, ancillas: int) -> tuple[np.ndarray, np.ndarray, str]:
    if stats is not None:
        success, features = stats.noisy(p)
        return success, features, "trajectories"
    success, features, _ = depolarized(states.features, states.success, p, n2q, ancillas)
    return success, features, "global approximation"


def _native_rate(p: float | None, logical: int, native: int) -> float | None:
    """The native two-qubit error rate that loses as much fidelity as rate p on every logical CNOT."""
    if p is None or native == 0:
        return None
    return float(1.0 - (1.0 - p) ** (logical / native))


def target_table(states: QuixerStates, head: HeadFn, targets: torch.Tensor, weights: np.ndarray | None,
                 names: Sequence[str], select: str, seed: int, eps: float, stats, trajectories: dict | None,
                 global_half_signal: float | None, n2q: int, ancillas: int) -> dict[str, Any]:
    """Compile the first window's device circuit (Z setting) for each target and derive its cost row."""
    gate_list = GateListBuilder().build(window_circuit(states, 0), "measure_reset", readout=True, select=select)
    logical = len(gate_list.two_qubit_positions)
    circuit = to_qiskit(gate_list, "Z")
    traj_rate = None if trajectories is None else trajectories["criteria"]["half_signal"]["break_even_p2q"]
    rows = {}
    for name in names:
        LOG.info("compiling for %s", name)
        row = target_costs(circuit, name, seed)
        fidelity = row["estimated_success"]
        p_eq = float(1.0 - fidelity ** (1.0 / logical)) if fidelity > 0 else 1.0
        success, features, source = _noisy_at(p_eq, stats, states, n2q, ancillas)
        shots = float(np.average(3.0 / (eps**2 * np.maximum(success, 1e-300)), weights=weights))
        row.update({
            "logical_two_qubit_gates": logical,
            "equivalent_p2q": p_eq,
            "noise_source": source,
            "success_probability": float(np.average(success, weights=weights)),
            "cross_entropy": score_metrics(head(features), targets, weights)["cross_entropy"],
            "raw_shots_per_prediction": shots,
            "break_even_criterion": "half_signal",
            "break_even_native_p2q": _native_rate(traj_rate, n2q, row["native_two_qubit_gates"]),
            "global_break_even_native_p2q": _native_rate(global_half_signal, n2q, row["native_two_qubit_gates"]),
            "hqc_per_prediction": (hqc(row["one_qubit_gates"], row["native_two_qubit_gates"], row["measurements"],
                                       shots) if name == "quantinuum" else None),
        })
        rows[name] = row
    return rows


def hardware_sections(states: QuixerStates, head: HeadFn, targets: torch.Tensor, weights: np.ndarray | None,
                      unigram_nll: np.ndarray, config: CircuitConfig, out_dir: Path, windows: list[int],
                      n2q: int, ancillas: int, model_sizes: dict) -> dict[str, Any]:
    """Every hardware section resources.json holds (each null when its flag is off), and the global
    approximation's half-signal rate."""
    half_signal = global_half_signal_p2q(states.features, states.success, weights, n2q, ancillas)
    out: dict[str, Any] = {"half_signal_p2q": half_signal, "trajectories": None, "qasm": None, "targets": None,
                           "device_runs": None, "fault_tolerant": None}
    stats = None
    if config.trajectories > 0:
        LOG.info("trajectories: %d windows x %d error counts up to %d x %d", states.windows,
                 len(error_grid(config.max_errors)), config.max_errors, config.trajectories)
        stats, info = simulate_windows(states, config.trajectories, config.max_errors, config.seed, config.select)
        rates = sorted(set(config.noise_2q) | {1e-5, 3e-5, 1e-4, 3e-4, 1e-3})
        report = trajectory_report(stats, head, targets, weights, unigram_nll, n2q, ancillas, rates,
                                   config.bootstrap, config.seed)
        out["trajectories"] = {**info, **report}
    if config.qasm > 0:
        folder = out_dir / QASM_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        builder = GateListBuilder()
        files = []
        for pos in range(min(config.qasm, states.windows)):
            gate_list = builder.build(window_circuit(states, pos), "measure_reset", readout=True, select=config.select)
            files += write_qasm(gate_list, folder, f"window{windows[pos]}")
        out["qasm"] = {"folder": QASM_FOLDER, "files": files, "layout": "measure_reset",
                       "post_selection": "keep a shot when every bit of register 'post' is 0"}
    if config.targets:
        out["targets"] = target_table(states, head, targets, weights, config.targets, config.select, config.seed,
                                      config.eps, stats, out["trajectories"], half_signal, n2q, ancillas)
    if config.device_shots > 0:
        runs = []
        count = min(config.device_windows, states.windows)
        subset = dataclasses.replace(states, **{k: getattr(states, k)[:count] for k in
                                                ("angles", "psi", "success", "readout_state", "features")})
        for target in config.device_targets:
            LOG.info("noisy device run on %s: %d windows x 3 settings x %d shots", target, count, config.device_shots)
            runs.append(noisy_device_run(subset, head, targets[:count], config.device_shots, config.seed, target,
                                         config.select))
        out["device_runs"] = runs
    if unused_code(model_sizes["tokens"]) is None:
        out["fault_tolerant"] = {"skipped": "the reduced construction needs an unused index code (T < 2^m)"}
    else:
        shots = float(np.average(3.0 / (config.eps**2 * states.success), weights=weights))
        out["fault_tolerant"] = fault_tolerant_estimate(model_sizes["qubits"], model_sizes["ansatz_layers"],
                                                        model_sizes["degree"], model_sizes["tokens"],
                                                        config.ft_precision, shots)
    return out

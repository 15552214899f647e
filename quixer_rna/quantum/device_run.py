"""The circuit run end to end as a device would run it, shot by shot in qiskit-aer, mid-circuit measurements
and resets included, the three measurement settings as three circuits:
    heron       compiled for IBM Heron (FakeMarrakesh's coupling map and native gates) and simulated with
                that fake backend's noise model: its calibrated gate errors (depolarising, at the calibrated
                rates) and readout errors; thermal relaxation is left out (Aer's Kraus relaxation takes 24 s to
                build for 156 qubits and several times longer per shot), and so is idling between gates
    quantinuum  compiled for the all-to-all RZZ target and simulated with depolarising errors at Helios'
                published rates (quantum.targets: 2.5e-5 per U1q, 7.9e-4 per RZZ, 3.3e-4 readout flips)
A shot is kept when every post-selection bit is 0; each expectation is the mean of +-1 over the kept shots
of its setting; the model's head turns the 3n expectations into next-token logits.

Beside the noisy run: the exact metrics, and the exact state sampled with the same number of kept shots
per window and setting (shot noise alone), so the difference between the two is what the device's noise
costs.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .export import SETTINGS, to_qiskit
from .gatelist import GateListBuilder
from .params import QuixerStates, window_circuit
from .shots import HeadFn, expectations_from_frequencies, sampled_expectations, score_metrics
from .targets import SPECS, compile_for, fake_backend

NOISY_TARGETS = ("heron", "quantinuum")


def _simulator(target: str, seed: int, backend):
    from qiskit_aer import AerSimulator
    from qiskit_aer.noise import NoiseModel, ReadoutError, depolarizing_error

    if target == "heron":
        noise = NoiseModel.from_backend(backend, thermal_relaxation=False)
        return AerSimulator(noise_model=noise, seed_simulator=seed, max_parallel_threads=1)
    spec = SPECS[target]
    noise = NoiseModel()
    noise.add_all_qubit_quantum_error(depolarizing_error(spec.error_2q, 2), [spec.two_qubit])
    noise.add_all_qubit_quantum_error(depolarizing_error(spec.error_1q, 1), ["r"])
    flip = spec.error_measure
    noise.add_all_qubit_readout_error(ReadoutError([[1 - flip, flip], [flip, 1 - flip]]))
    return AerSimulator(noise_model=noise, seed_simulator=seed, max_parallel_threads=1)


def _setting_frequencies(counts: dict[str, int], qubits: int) -> tuple[np.ndarray, int, int]:
    """(kept-shot frequencies over the 2**n data outcomes, kept shots, all shots) from Qiskit counts whose
    keys read 'data post' (registers in reverse order of creation, bit 0 rightmost)."""
    freq = np.zeros(2**qubits)
    kept = total = 0
    for key, count in counts.items():
        data, post = key.split(" ")
        total += count
        if "1" in post:
            continue
        kept += count
        outcome = int(data[::-1], 2)    # data bit i is data qubit i; wire 0 is the most significant bit
        freq[outcome] += count
    return (freq / kept if kept else freq), kept, total


def noisy_device_run(states: QuixerStates, head: HeadFn, targets: torch.Tensor, shots: int, seed: int,
                     target: str = "heron", select: str = "reduced") -> dict:
    """Noisy end-to-end run of every window of `states` with `shots` raw shots per setting."""
    backend = fake_backend() if target == "heron" else None
    simulator = _simulator(target, seed, backend)
    builder = GateListBuilder()
    n = states.qubits
    started = time.perf_counter()
    freqs = np.zeros((len(SETTINGS), states.windows, 2**n))
    kept = np.zeros((len(SETTINGS), states.windows), dtype=np.int64)
    circuits = []
    for pos in range(states.windows):
        gate_list = builder.build(window_circuit(states, pos), "measure_reset", readout=True, select=select)
        circuits += [compile_for(to_qiskit(gate_list, setting), target, seed, backend) for setting in SETTINGS]
    two_qubit = [int(c.count_ops().get(SPECS[target].two_qubit, 0)) for c in circuits]
    result = simulator.run(circuits, shots=shots).result()
    for pos in range(states.windows):
        for s in range(len(SETTINGS)):
            counts = result.get_counts(pos * len(SETTINGS) + s)
            freqs[s, pos], kept[s, pos], _ = _setting_frequencies(counts, n)
    noisy_features = expectations_from_frequencies(freqs, n)
    success = kept.mean(axis=0) / shots
    # the exact state sampled with the kept shots of the noisy run (at least one per setting)
    rng = np.random.default_rng(seed)
    shot_only = np.zeros_like(noisy_features)
    per_window_kept = np.maximum(kept.min(axis=0), 1)
    for pos in range(states.windows):
        shot_only[pos] = sampled_expectations(states.readout_state[pos:pos + 1], n, int(per_window_kept[pos]), rng)[0]
    return {
        "target": target,
        "noise_model": backend.name if backend is not None else "depolarising at " + SPECS[target].source,
        "windows": states.windows,
        "shots_per_setting": shots,
        "native_two_qubit_gates_mean": float(np.mean(two_qubit)),
        "success_probability": float(success.mean()),
        "exact_success_probability": float(states.success.mean()),
        "kept_shots_per_setting_mean": float(kept.mean()),
        "noisy": score_metrics(head(noisy_features), targets),
        "exact": score_metrics(head(states.features), targets),
        "exact_with_same_kept_shots": score_metrics(head(shot_only), targets),
        # least-squares slope of the noisy expectations on the exact ones (1: no loss of signal, 0: none left)
        "expectation_scale": float(np.vdot(noisy_features, states.features)
                                   / np.vdot(states.features, states.features)),
        "seconds": time.perf_counter() - started,
    }

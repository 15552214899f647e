"""quixer_rna.quantum's hardware side: the fast gate list against PennyLane's decomposition, the OpenQASM 3
round trip through Qiskit's importer, Pauli-error trajectories against the exact circuit and against
default.mixed, the compiled circuits' native gates and coupling, the noisy device run, the fault-tolerant
estimate, stratified window sampling and the cost table."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pennylane as qml
import pytest
import torch

import quixer_circuit as script
from fixtures import random_quixer, save_quixer_run, write_token_folder
from quixer_rna.formats.resources import CircuitResources
from quixer_rna.quantum.export import from_qasm3, statevector_msb, to_qasm3, to_qiskit
from quixer_rna.quantum.fault_tolerant import fault_tolerant_estimate
from quixer_rna.quantum.gatelist import MEASURE_RESET, GateListBuilder
from quixer_rna.quantum.io import sample_test_windows
from quixer_rna.quantum.noise import mixed_state_run
from quixer_rna.quantum.params import quixer_states, random_circuit, window_circuit
from quixer_rna.quantum.resources import count_resources, decomposed_operations
from quixer_rna.quantum.shots import head_function, score_metrics
from quixer_rna.quantum.summary import cost_table_rows
from quixer_rna.quantum.targets import SPECS, compile_for, fake_backend, uses_only_target
from quixer_rna.quantum.trajectories import LightningRunner, TrajectoryStats, error_grid, simulate_strata

pytestmark = pytest.mark.usefixtures("one_thread")
VOCAB = 6


def tiny_model(qubits: int = 2, tokens: int = 3, degree: int = 1, seed: int = 0) -> torch.nn.Module:
    return random_quixer(qubits, 1, tokens, degree, seed, vocab=VOCAB)


def test_gate_list_is_pennylanes_decomposition_with_measurements_in_place():
    wc = random_circuit(2, 1, 2, 3, seed=4)
    builder = GateListBuilder()
    builder.build(random_circuit(2, 1, 2, 3, seed=9))                 # the affine maps come from another window
    gates = builder.build(wc, "measure_reset").gates
    ops = decomposed_operations(wc, "measure_reset")
    assert [g.name for g in gates] == [MEASURE_RESET if op.name == "MidMeasureMP" else op.name for op in ops]
    for gate, op in zip(gates, ops):
        assert gate.wires == tuple(op.wires)
        if gate.angle is not None:
            assert abs(gate.angle - float(op.parameters[0])) < 1e-9


def test_qasm3_roundtrip_through_qiskits_importer_equals_the_pennylane_state():
    wc = random_circuit(2, 1, 2, 3, seed=1)
    gate_list = GateListBuilder().build(wc, "fresh")
    ops = decomposed_operations(wc, "fresh")
    (state,) = qml.execute([qml.tape.QuantumScript(ops, [qml.state()])], qml.device("default.qubit",
                                                                                  wires=gate_list.layout.total))
    imported = from_qasm3(to_qasm3(to_qiskit(gate_list)))
    vector = statevector_msb(imported)
    overlap = np.vdot(vector, state)
    assert abs(abs(overlap) - 1) < 1e-10                       # equal up to the dropped global phase
    assert np.abs(vector * overlap / abs(overlap) - state).max() < 1e-10
    device = from_qasm3(to_qasm3(to_qiskit(GateListBuilder().build(wc, "measure_reset"), "Y")))
    ops = dict(device.count_ops())
    assert ops["reset"] == 2 * 2 and ops["measure"] == 2 * 2 + 2 + 2 and ops["sdg"] == ops["h"] == 2


def test_trajectory_without_errors_is_the_exact_post_selected_circuit():
    """The measure-and-reset trajectory (projections mid-circuit) with no error gives the simulator's success
    probability and expectations, for several degrees (several projections)."""
    for qubits, tokens, degree in ((2, 3, 1), (2, 3, 3), (3, 5, 2)):
        states = quixer_states(tiny_model(qubits, tokens, degree, seed=degree), torch.randint(0, VOCAB, (2, tokens)))
        runner = LightningRunner(GateListBuilder().build(window_circuit(states, 1)))
        stats = simulate_strata(runner, np.array([1]), 1, np.random.default_rng(0))
        assert abs(stats[2] - states.success[1]) < 1e-10
        assert np.abs(stats[3] - states.features[1]).max() < 1e-10


def test_error_grid_and_interpolated_strata():
    assert error_grid(5).tolist() == [1, 2, 3, 4, 5]
    grid = error_grid(40)
    assert grid[:8].tolist() == list(range(1, 9)) and grid[-1] == 40 and len(grid) <= 16
    # means that are linear in k are reproduced exactly by the interpolated mixture at any p
    ks = np.array([1, 2, 5, 9])
    mean_w = 0.5 - 0.03 * ks
    stats = TrajectoryStats(100, ks, np.repeat(mean_w[None, :, None], 1, 2), np.zeros((1, 4, 1, 3)),
                            np.array([0.6]), np.zeros((1, 3)))
    for p in (0.005, 0.02, 0.05):
        pmf, tail = stats.strata(p)
        expected = pmf[0] * 0.6 + sum(pmf[k] * (0.5 - 0.03 * k) for k in range(1, 10)) + tail * (0.5 - 0.03 * 9)
        assert stats.noisy(p)[0][0] == pytest.approx(expected)


def test_trajectories_converge_to_default_mixed_with_local_noise():
    """Stratified trajectories against default.mixed (the same two-qubit depolarising channel after every
    CNOT, as a density matrix) on a 5-qubit circuit: exact at p = 0; at p > 0 the success probability, the
    expectations and the cross-entropy within 4 Monte-Carlo standard errors, which shrink with more
    trajectories."""
    model = tiny_model(2, 3, 1, seed=5)
    states = quixer_states(model, torch.randint(0, VOCAB, (1, 3)))
    wc = window_circuit(states, 0)
    runner = LightningRunner(GateListBuilder().build(wc))
    n2q = len(runner.two_qubit)
    assert n2q == count_resources(wc)["two_qubit_gates"]
    errors = np.arange(1, 7)
    weights, weighted, _, _ = simulate_strata(runner, errors, 250, np.random.default_rng(1))
    stats = TrajectoryStats(n2q, errors, weights[None], weighted[None], states.success[:1], states.features[:1])
    head = head_function(model)
    target = torch.tensor([2])
    mixed = {}
    for p in (0.0, 3e-3, 1e-2):
        success, features = stats.noisy(p)
        mixed_success, mixed_features = mixed[p] = mixed_state_run(wc, p)
        pmf, tail = stats.strata(p)
        b = pmf[1:].copy()
        b[-1] += tail
        # standard error of the stratified means (each stratum's sample variance / its size)
        se_success = math.sqrt(float((b**2 * weights.var(axis=1) / weights.shape[1]).sum()))
        se_numer = np.sqrt((b[:, None] ** 2 * weighted.var(axis=1) / weights.shape[1]).sum(axis=0))
        if p == 0:
            assert abs(success[0] - mixed_success) < 1e-9 and np.abs(features[0] - mixed_features).max() < 1e-9
            continue
        assert 0 < se_success < 0.01
        assert abs(success[0] - mixed_success) < 4 * se_success + 1e-9, (p, success[0], mixed_success, se_success)
        tolerance = 4 * (se_numer + np.abs(features[0]) * se_success) / mixed_success + 1e-9
        assert (np.abs(features[0] - mixed_features) < tolerance).all(), (p, features[0], mixed_features)
        ce = score_metrics(head(features), target)["cross_entropy"]
        mixed_ce = score_metrics(head(mixed_features[None, :]), target)["cross_entropy"]
        assert abs(ce - mixed_ce) < 0.02, (p, ce, mixed_ce)
    # a tenth of the trajectories errs more at p = 1e-2: Monte-Carlo error, not a bias
    few = TrajectoryStats(n2q, errors, weights[None, :, :40], weighted[None, :, :40], states.success[:1],
                          states.features[:1])
    many_error = abs(stats.noisy(1e-2)[0][0] - mixed[1e-2][0])
    assert many_error < 0.01 and abs(few.noisy(1e-2)[0][0] - stats.noisy(1e-2)[0][0]) < 0.05


def test_compiled_circuits_use_only_each_targets_gates_and_coupling():
    gate_list = GateListBuilder().build(random_circuit(2, 1, 1, 3, seed=2), "measure_reset")
    circuit = to_qiskit(gate_list, "X")
    backend = fake_backend()
    for name, spec in SPECS.items():
        compiled = compile_for(circuit, name, seed=0, backend=backend if spec.basis is None else None)
        assert uses_only_target(compiled, name, backend), name
        ops = dict(compiled.count_ops())
        assert ops[spec.two_qubit] >= gate_list.count("CNOT") // 2 and "cx" not in ops
        assert ops["measure"] == circuit.count_ops()["measure"] and ops["reset"] == circuit.count_ops()["reset"]
    # the check can fail: the uncompiled circuit's CNOTs are native nowhere
    assert not uses_only_target(circuit, "quantinuum") and not uses_only_target(circuit, "heron", backend)


def test_window_sampling_covers_every_test_transcript(tmp_path):
    sizes = [1, 5, 2, 9, 3]                                     # windows per test transcript
    names = [f"t{i}" for i, size in enumerate(sizes) for _ in range(size)]
    count = len(names)
    windows = torch.arange(count)[:, None] % VOCAB + torch.zeros(1, 4, dtype=torch.long)
    data = write_token_folder(tmp_path, {"train": windows, "val": windows, "test": windows}, VOCAB,
                              sources={"test": names})
    chosen, weights, info = sample_test_windows(data, 2, seed=3)
    assert info["transcripts"] == len(sizes) and info["test_windows"] == count
    picked = [names[w] for w in chosen]
    assert set(picked) == set(names)                           # every transcript, at most 2 windows each
    assert all(picked.count(f"t{i}") == min(2, size) for i, size in enumerate(sizes))
    assert chosen == sorted(chosen) and len(set(chosen)) == len(chosen)
    # weights: the transcript's windows over those drawn, so weighted means estimate the all-window mean
    expected = np.array([sizes[int(names[w][1:])] / min(2, sizes[int(names[w][1:])]) for w in chosen])
    assert np.allclose(weights, expected / expected.mean())
    assert sample_test_windows(data, 2, seed=3)[0] == chosen and sample_test_windows(data, 2, seed=4)[0] != chosen


def test_fault_tolerant_estimate_counts_the_reduced_circuit():
    estimate = fault_tolerant_estimate(3, 1, 2, 31, 1e-3, shots_per_prediction=1e5)
    rotations, phase_gradient = estimate["methods"]
    assert rotations["logical_qubits"] == 3 + 5 + 2
    counted = count_resources(random_circuit(3, 1, 2, 31), "measure_reset")
    assert abs(rotations["CNOT"] - counted["two_qubit_gates"]) <= 0.01 * counted["two_qubit_gates"]
    # every multiplexer angle is one synthesised rotation of ~1.15 log2(1/eps) + 9 T gates
    assert 15 * counted["gates"]["RZ"] / 2 < rotations["T"] < 30 * counted["gates"]["RZ"]
    assert phase_gradient["logical_qubits"] > rotations["logical_qubits"] and phase_gradient["Toffoli"] > 0
    for row in (rotations, phase_gradient):
        assert row["memory_error_per_shot"] < 0.01 and row["code_distance"] % 2 == 1
        assert row["seconds_per_prediction"] == pytest.approx(row["seconds_per_shot"] * 1e5)
        assert row["physical_qubits"] > 2 * row["logical_qubits"] * 2 * row["code_distance"] ** 2


def write_sampled_run(root, tokens: int = 3, degree: int = 1):
    """A token folder whose test split has 4 transcripts of 2-5 windows, and a run folder with a tiny Quixer."""
    g = torch.Generator().manual_seed(0)
    splits, sources = {}, {}
    for split, count in (("train", 30), ("val", 6), ("test", 14)):
        start = torch.randint(0, VOCAB, (count, 1), generator=g)
        splits[split] = (start + torch.arange(tokens + 1)) % VOCAB
    sources["test"] = [f"t{i}" for i, size in enumerate((2, 5, 3, 4)) for _ in range(size)]
    data = write_token_folder(root / "data", splits, VOCAB, sources=sources)
    model = tiny_model(2, tokens, degree, seed=3)
    config = {"embedding_dim": 8, "qubits": 2, "ansatz_layers": 1, "qsvt_degree": degree, "dropout": 0.0}
    save_quixer_run(root / "run", model, config, VOCAB, tokens)
    return data, root / "run", model, splits


@pytest.mark.slow
def test_cli_hardware_sections_on_sampled_windows(tmp_path, capsys):
    data, run, model, splits = write_sampled_run(tmp_path)
    out = tmp_path / "out"
    argv = ["--run_dir", str(run), "--data_dir", str(data), "--output_dir", str(out), "--windows_per_transcript", "2",
            "--check", "--shots", "100", "--noise_2q", "1e-3", "--trajectories", "6", "--max_errors", "4",
            "--bootstrap", "20", "--targets", "quantinuum", "ionq", "--device_shots", "60", "--device_windows", "2",
            "--device_targets", "quantinuum"]
    assert script.main(argv) == 0
    printed = capsys.readouterr().out
    assert "trajectories:" in printed and "break-even (half_signal" in printed and "fault-tolerant" in printed
    result = json.loads((out / "resources.json").read_text())
    assert result["select"] == "reduced" and result["check"]["status"] == "passed"
    assert result["sampling"]["transcripts"] == 4 and len(result["windows"]) == 2 * 4
    weights = np.array(result["window_weights"])
    assert np.isclose(weights.mean(), 1.0) and weights.std() > 0
    # metrics are weighted means over the sampled windows
    windows = splits["test"][result["windows"]]
    with torch.no_grad():
        nll = torch.nn.functional.cross_entropy(model(windows[:, :3]), windows[:, 3], reduction="none").numpy()
    assert result["exact"]["cross_entropy"] == pytest.approx(float(np.average(nll, weights=weights)), abs=1e-5)

    traj = result["trajectories"]
    assert traj["trajectories"] == 8 * 4 * 6 and traj["layout"] == "measure_reset"
    assert traj["error_counts"] == [1, 2, 3, 4]
    assert traj["max_exact_success_error"] < 1e-9 and traj["max_exact_expectation_error"] < 1e-9
    assert traj["two_qubit_gates"] == result["measure_reset"]["two_qubit_gates"] == result["two_qubit_gates"]
    curve = traj["curve"]
    assert [row["p_2q"] for row in curve] == sorted(row["p_2q"] for row in curve)
    assert curve[0]["success_probability"] == pytest.approx(result["exact"]["success_probability"], rel=0.05)
    assert set(traj["criteria"]) == {"unigram", "half_signal"}
    assert curve[0]["signal_scale"] == pytest.approx(1.0, abs=0.05)
    assert curve[-1]["signal_scale"] < curve[0]["signal_scale"]
    half = traj["criteria"]["half_signal"]
    if half["break_even_p2q"] is not None and half["global_break_even_p2q"] is not None:
        assert half["global_over_trajectory"] == pytest.approx(half["global_break_even_p2q"] / half["break_even_p2q"])

    assert set(result["targets"]) == {"quantinuum", "ionq"}
    quantinuum = result["targets"]["quantinuum"]
    assert 0 < quantinuum["estimated_success"] <= 1 and quantinuum["native_only"]
    assert quantinuum["raw_shots_per_prediction"] >= result["raw_shots_per_prediction"]["mean_over_windows"] * 0.99
    assert [r["target"] for r in result["device_runs"]] == ["quantinuum"]
    for device in result["device_runs"]:
        assert device["windows"] == 2 and 0 <= device["success_probability"] <= 1
        assert device["exact"]["cross_entropy"] > 0
    assert result["fault_tolerant"]["methods"][0]["logical_qubits"] == 2 + 2 + 1
    assert len(result["qasm"]["files"]) == 3 and (out / "qasm" / result["qasm"]["files"][0]).is_file()

    resources = CircuitResources.read(out)  # every section of a real run is typed as the format declares it
    assert resources.as_dict() == result
    rows = cost_table_rows(resources)
    assert rows[0].startswith("| target") and len(rows) == 2 + 2 + 1
    assert "Quantinuum" in rows[2] and rows[-1].startswith("| logical circuit")
    assert cost_table_rows(dataclasses.replace(resources, targets=None)) == []


def test_cli_windows_and_sampling_are_exclusive(tmp_path, capsys):
    data, run, _, _ = write_sampled_run(tmp_path)
    assert script.main(["--run_dir", str(run), "--data_dir", str(data), "--output_dir", str(tmp_path / "out"),
                        "--windows", "0:2", "--windows_per_transcript", "1"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "--windows_per_transcript" in err[0]


def test_a_fidelity_below_a_float_is_written_from_its_log10():
    from quixer_rna.quantum.summary import _fidelity

    assert _fidelity({"estimated_success": 0.0, "log10_estimated_success": -136.8}) == "1.6e-137"
    assert _fidelity({"estimated_success": 6.3e-10, "log10_estimated_success": -9.2}) == "6.3e-10"
    assert _fidelity({"estimated_success": 0.28, "log10_estimated_success": -0.553}) == "0.28"

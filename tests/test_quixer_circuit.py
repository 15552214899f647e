"""quixer_circuit.py and quixer_rna.quantum: the gate-level circuit of a trained Quixer model against the
simulator it was trained with, its resource counts against hand tallies, finite-shot estimates, the global
depolarising approximation against PennyLane's default.mixed, and the stage end to end."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

qml = pytest.importorskip("pennylane")

import quixer_circuit as script  # noqa: E402
from fixtures import random_quixer, save_quixer_run, write_token_folder  # noqa: E402
from quixer_rna import checkpoint as ckpt  # noqa: E402
from quixer_rna.cli import config_from_args, config_record  # noqa: E402
from quixer_rna.errors import UserError  # noqa: E402
from quixer_rna.formats.resources import CircuitResources  # noqa: E402
from quixer_rna.models import build_model  # noqa: E402
from quixer_rna.quantum.circuit import check_windows, circuit_tape, make_layout, postselected_amplitudes  # noqa: E402
from quixer_rna.quantum.noise import break_even_p2q, depolarized, mixed_state_comparison  # noqa: E402
from quixer_rna.quantum.params import qubit_counts, quixer_states, random_circuit, window_circuit  # noqa: E402
from quixer_rna.quantum.resources import count_resources, decomposed_operations, full_resources  # noqa: E402
from quixer_rna.quantum.select import degree_codes, degree_condition, effective_select  # noqa: E402
from quixer_rna.quantum.shots import exact_expectations, sampled_expectations  # noqa: E402
from quixer_rna.quantum import stage  # noqa: E402
from quixer_rna.quantum.config import CircuitConfig  # noqa: E402
from quixer_rna.quantum.stage import parse_windows  # noqa: E402
from quixer_rna.quixer_sim import pauli_expectations  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = 1e-6
VOCAB = 6


def quixer(qubits: int, layers: int, tokens: int, degree: int, seed: int = 0) -> torch.nn.Module:
    return random_quixer(qubits, layers, tokens, degree, seed, vocab=VOCAB)


def trained_quixer(qubits: int, layers: int, tokens: int, degree: int, steps: int = 15) -> tuple[torch.nn.Module, dict]:
    """A tiny QuixerModel after a few Adam steps on random windows, and its config."""
    torch.manual_seed(1)
    config = {"embedding_dim": 8, "qubits": qubits, "ansatz_layers": layers, "qsvt_degree": degree, "dropout": 0.0}
    model = build_model("quixer", VOCAB, tokens, config)
    windows = torch.randint(0, VOCAB, (32, tokens + 1))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(windows[:, :-1]), windows[:, -1])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval(), config


def assert_circuit_matches(model: torch.nn.Module, windows: int = 3, seed: int = 0, select: str = "reduced") -> dict:
    g = torch.Generator().manual_seed(seed)
    context = torch.randint(0, VOCAB, (windows, model.context_length), generator=g)
    states = quixer_states(model, context)
    check = check_windows(states, range(windows), select=select)
    assert check["select"] == effective_select(select, model.context_length)
    assert check["status"] == "passed", check
    # the circuit keeps every phase: the direct comparison passes too, not only the phase-aligned one
    for key in ("max_state_error", "max_state_error_phase_aligned", "max_amplitude_error",
                "max_success_probability_error", "max_expectation_error"):
        assert check[key] < TOL, (key, check[key])
    # the success probability is what the trainer reports as postselection (float32 forward)
    model(context)
    trainer_post = float(model.extra_metrics()["postselection"])
    assert abs(float(np.mean([r["success_probability_circuit"] for r in check["per_window"]])) - trainer_post) < 1e-5
    return check


# ---- the circuit is the simulator's computation ------------------------------------------------------------

@pytest.mark.parametrize("qubits, layers, tokens, degree, select", [
    (2, 1, 2, 1, "controlled"), (3, 1, 3, 2, "controlled"), (2, 2, 4, 2, "controlled"), (2, 1, 1, 2, "controlled"),
    # the reduced SELECT (an unused index code: T < 2^m) at several shapes; T = 2^m falls back to controlled
    (2, 1, 3, 1, "reduced"), (3, 1, 3, 2, "reduced"), (2, 1, 5, 3, "reduced"), (3, 1, 2, 2, "reduced")])
def test_circuit_matches_simulator_at_random_parameters(qubits, layers, tokens, degree, select):
    model = quixer(qubits, layers, tokens, degree, seed=qubits + tokens)
    assert (model.poly_coeffs < 0).any() and (model.lcu_imag.abs() > 0.01).all()
    assert_circuit_matches(model, select=select)


def test_circuit_matches_simulator_after_training():
    model, _ = trained_quixer(3, 1, 3, 2)
    check = assert_circuit_matches(model, windows=4, seed=5)
    assert len({round(r["success_probability_circuit"], 6) for r in check["per_window"]}) > 1


def test_check_catches_a_wrong_circuit():
    """The check must be able to fail: a sign flip of c_1 in the circuit alone is caught."""
    model = quixer(2, 1, 3, 2, seed=3)
    states = quixer_states(model, torch.randint(0, VOCAB, (2, 3)))
    states.poly = states.poly * np.array([1.0, -1.0, 1.0])
    assert check_windows(states, range(2))["status"] == "failed"


def test_templates_and_their_counted_decomposition_give_the_same_state():
    """The check simulates PennyLane's decomposition into the counted gate set; the templates handed to the
    device as they are give the same post-selected amplitudes, phase included."""
    model = quixer(2, 1, 3, 2, seed=7)
    states = quixer_states(model, torch.randint(0, VOCAB, (1, 3)))
    wc = window_circuit(states, 0)
    assert {op.name for op in decomposed_operations(wc)} <= {"CNOT", "RX", "RY", "RZ"}
    templates = postselected_amplitudes(wc, decompose=False)
    assert np.abs(templates - postselected_amplitudes(wc, decompose=True)).max() < 1e-10
    assert np.abs(templates - states.psi[0]).max() < 1e-10


def test_reduced_select_degree_codes_need_one_bit_per_application_at_degree_two():
    codes = degree_codes(2)
    assert len(set(codes)) == 3 and all(0 <= c < 4 for c in codes)
    assert [len(degree_condition(j, 2, codes)[0]) for j in (1, 2)] == [1, 1]
    assert degree_codes(2, "controlled") == (0, 1, 2) and degree_codes(3) == (0, 1, 2, 3)


def test_degree_condition_uses_only_the_deciding_bits():
    assert degree_condition(1, 1)[0] == (0,) and degree_condition(1, 1)[1].tolist() == [False, True]
    positions, truth = degree_condition(1, 3)
    assert positions == (0, 1) and truth.tolist() == [False, True, True, True]
    positions, truth = degree_condition(2, 3)
    assert positions == (0,) and truth.tolist() == [False, True]            # k >= 2 <=> high bit
    positions, truth = degree_condition(3, 3)
    assert positions == (0, 1) and truth.tolist() == [False, False, False, True]
    positions, truth = degree_condition(2, 2)
    assert positions == (0,) and truth.tolist() == [False, True]


# ---- resources ---------------------------------------------------------------------------------------------

# Degree-register bits that decide "k >= j" (k = 0..d in ceil(log2(d+1)) bits), worked out by hand:
# d=1: k >= 1 is the single bit. d=2 (k = 00, 01, 10): k >= 1 needs both bits (01 and 10 share no bit),
# k >= 2 is the high bit. d=3: k >= 1 = "not 00" needs both, k >= 2 the high bit, k >= 3 = "11" both.
DECIDING_BITS = {1: [1], 2: [2, 1], 3: [2, 1, 2]}


def select_two_qubit_tally(qubits: int, layers: int, tokens: int, degree: int, select: str = "controlled") -> int:
    """CNOTs of the SELECT rotations from first principles: application j has, per gate of circuit 14, one
    rotation multiplexed over m index bits (+ the data control of a CRX; controlled: + s_j degree bits), and
    a multiplexer over c controls costs 2^c CNOTs (Mottonen et al. 2004, Gray-code order)."""
    m = math.ceil(math.log2(tokens)) if tokens > 1 else 0
    ry_per_layer, crx_per_layer = 2 * qubits, 2 * qubits
    total = 0
    for s in DECIDING_BITS[degree]:
        s = s if select == "controlled" else 0
        total += layers * (ry_per_layer * 2 ** (s + m) + crx_per_layer * 2 ** (s + m + 1))
    return total


def prepare_two_qubit_tally(tokens: int, degree: int) -> int:
    """CNOTs of the reduced construction's conditional preparations: per application, the cascade over s_j
    deciding bits and index prefixes of 0..m-1 bits, 2^s (2^m - 1) CNOTs, twice (PREPARE and its adjoint)."""
    m = math.ceil(math.log2(tokens))
    codes = degree_codes(degree)
    return sum(2 * 2 ** len(degree_condition(j, degree, codes)[0]) * (2**m - 1) for j in range(1, degree + 1))


@pytest.mark.parametrize("qubits, layers, tokens, degree, select", [
    (2, 1, 3, 2, "controlled"), (3, 1, 4, 3, "controlled"), (2, 2, 2, 1, "controlled"), (2, 1, 3, 2, "reduced"),
    (2, 1, 5, 3, "reduced")])
def test_resource_counts_match_hand_tallies_and_a_full_decomposition(qubits, layers, tokens, degree, select):
    wc = random_circuit(qubits, layers, degree, tokens, seed=2)
    m, r = math.ceil(math.log2(tokens)), math.ceil(math.log2(degree + 1))
    q = qubit_counts(qubits, tokens, degree)
    assert (q["data"], q["index"], q["degree"]) == (qubits, degree * m, r)
    assert q["total"] == qubits + degree * m + r == make_layout(qubits, tokens, degree).total
    assert q["total_measure_reset"] == qubits + m + r == make_layout(qubits, tokens, degree, "measure_reset").total

    tape = circuit_tape(wc, select=select)
    rotations = sum(op.name == "SelectPauliRot" and op.wires[-1] < qubits for op in tape.operations)
    assert rotations == degree * 4 * qubits * layers
    counted = count_resources(wc, select=select)
    parts = counted["two_qubit_gates_by_part"]
    assert parts["select_rotations"] == select_two_qubit_tally(qubits, layers, tokens, degree, select)
    if select == "reduced":
        assert parts["prepare_index"] == prepare_two_qubit_tally(tokens, degree)
    assert parts["readout"] == 2 * (2 * qubits)                # 2n CRX in one circuit-14 layer, 2 CNOTs each
    assert sum(parts.values()) == counted["two_qubit_gates"] == counted["gates"]["CNOT"]

    # the shortcut (one decomposition per multiplexer shape, streamed) equals PennyLane's whole decomposition
    full = full_resources(wc, select=select)
    assert counted["gates"] == full["gates"]
    assert counted["two_qubit_gates"] == full["two_qubit_gates"]
    assert counted["depth"] == full["depth"]

    reset = count_resources(wc, "measure_reset", select=select)
    assert reset["mid_circuit_measurements"] == degree * m
    assert reset["gates"] == counted["gates"]


def test_paper_sized_circuit_is_counted_without_simulating():
    """The paper-sized model (n=6, L=4, d=3) reads T = 31 tokens: the controlled SELECT as first built, and the
    reduced one at a third of its CNOTs; the tuned model (n=3, L=1, d=2) at 2.5x fewer."""
    wc = random_circuit(6, 4, 3, 31)
    q = qubit_counts(6, 31, 3)
    assert (q["total"], q["total_measure_reset"]) == (23, 13)
    counted = count_resources(wc, select="controlled")
    assert counted["two_qubit_gates_by_part"]["select_rotations"] == select_two_qubit_tally(6, 4, 31, 3) == 46080
    assert counted["two_qubit_gates"] == counted["gates"]["CNOT"] > 46080
    assert counted["depth"] > counted["two_qubit_gates"]
    paper = count_resources(wc)
    reduced_tally = select_two_qubit_tally(6, 4, 31, 3, "reduced")
    assert paper["two_qubit_gates_by_part"]["select_rotations"] == reduced_tally == 13824
    assert 3 * paper["two_qubit_gates"] <= counted["two_qubit_gates"] and paper["two_qubit_gates"] <= 15_500
    tuned = count_resources(random_circuit(3, 1, 2, 31))
    tuned_before = count_resources(random_circuit(3, 1, 2, 31), select="controlled")
    assert tuned_before["two_qubit_gates"] > 2.5 * tuned["two_qubit_gates"]


# ---- finite shots ------------------------------------------------------------------------------------------

def test_sampled_expectations_converge_like_one_over_sqrt_shots():
    rng = np.random.default_rng(0)
    n, windows = 3, 60
    states = rng.normal(size=(windows, 2**n)) + 1j * rng.normal(size=(windows, 2**n))
    states /= np.linalg.norm(states, axis=1, keepdims=True)
    exact = exact_expectations(states, n)
    planes = torch.tensor(np.stack([states.real.T, states.imag.T]))
    assert np.abs(exact - pauli_expectations(planes, n).T.numpy()).max() < 1e-12
    rms = {}
    for shots in (100, 10_000):
        errors = sampled_expectations(states, n, shots, rng) - exact
        rms[shots] = float(np.sqrt((errors**2).mean()))
        # a +-1 outcome has variance 1 - <P>^2 <= 1: the mean of S of them errs by about 1/sqrt(S)
        assert 0.3 < rms[shots] * math.sqrt(shots) < 1.0
    assert 6 < rms[100] / rms[10_000] < 15


# ---- noise -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("qubits, tokens, degree", [(2, 2, 1), (2, 3, 1), (2, 2, 2)])
def test_depolarizing_approximation_agrees_with_default_mixed(qubits, tokens, degree):
    """Stated tolerance: success probability and every expectation within 1 - F (the probability that some
    gate fails) of default.mixed with local two-qubit depolarising noise after every CNOT; exact at p = 0.
    Measured: 0.12 to 0.54 of 1 - F; the global approximation is the pessimistic one."""
    model = quixer(qubits, 1, tokens, degree, seed=11)
    states = quixer_states(model, torch.randint(0, VOCAB, (1, tokens)))
    wc = window_circuit(states, 0)
    rows = mixed_state_comparison(wc, float(states.success[0]), states.features[0], [0.0, 1e-4, 1e-3, 1e-2])
    assert rows[0]["success_probability_error"] < 1e-9 and rows[0]["max_expectation_error"] < 1e-9
    assert rows[0]["two_qubit_gates"] == count_resources(wc)["two_qubit_gates"]
    for row in rows[1:]:
        slack = 1.0 - row["fidelity"]
        assert row["success_probability_error"] <= slack, row
        assert row["max_expectation_error"] <= slack, row
        assert row["success_probability_approx"] < row["success_probability_mixed"], row
        assert row["max_expectation_shift"] > 0
    assert rows[-1]["max_expectation_error"] > rows[1]["max_expectation_error"]


def test_break_even_error_rate_by_bisection():
    features, success = np.ones((4, 1)), np.full(4, 0.5)
    targets = torch.zeros(4, dtype=torch.long)

    def head(f):
        f = torch.as_tensor(f, dtype=torch.float64)
        return torch.cat([5.0 * f, torch.zeros_like(f)], dim=1)

    n2q, ancillas, unigram = 100, 3, 0.3
    p, reason = break_even_p2q(head, features, success, targets, n2q, ancillas, unigram)
    assert reason is None and 0 < p < 1
    _, noisy, _ = depolarized(features, success, p, n2q, ancillas)
    ce = float(torch.nn.functional.cross_entropy(head(noisy).float(), targets))
    assert abs(ce - unigram) < 1e-4
    assert break_even_p2q(head, features, success, targets, n2q, ancillas, 0.001)[0] is None      # never beats it
    p, reason = break_even_p2q(head, features, success, targets, n2q, ancillas, 0.8)         # log 2 < 0.8
    assert p is None and "head alone" in reason


# ---- the stage ---------------------------------------------------------------------------------------------

def write_run(root: Path, tokens: int = 2, degree: int = 2) -> tuple[Path, Path, torch.nn.Module, dict]:
    """A token folder (windows of tokens + 1 counting tokens), a run folder holding a trained tiny Quixer, the
    model, and the windows of every split (window i of a split is row i)."""
    run = root / "run"
    g = torch.Generator().manual_seed(0)
    splits = {}
    for split, count in (("train", 40), ("val", 8), ("test", 12)):
        start = torch.randint(0, VOCAB, (count, 1), generator=g)
        splits[split] = (start + torch.arange(tokens + 1)) % VOCAB
    data = write_token_folder(root / "data", splits, VOCAB)
    model, config = trained_quixer(2, 1, tokens, degree, steps=20)
    save_quixer_run(run, model, config, VOCAB, tokens)
    return data, run, model, splits


def error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert ": error: " in err[0]
    return err[0]


@pytest.mark.slow
def test_cli_end_to_end_on_a_tiny_trained_run(tmp_path, capsys):
    data, run, model, splits = write_run(tmp_path)
    out = tmp_path / "out"
    argv = ["--run_dir", str(run), "--data_dir", str(data), "--output_dir", str(out), "--windows", "0:4,6",
            "--check", "--shots", "10", "1000", "--noise_2q", "1e-3", "1e-2", "--eps", "0.05",
            "--targets", "quantinuum", "ionq"]  # heron: test_quantum_hardware
    assert script.main(argv) == 0
    printed = capsys.readouterr().out
    assert "two-qubit gates" in printed and "check passed" in printed and "break-even" in printed
    result = json.loads((out / "resources.json").read_text())
    for key in ("qubits", "gates", "two_qubit_gates", "depth", "gate_set", "success_probability",
                "raw_shots_per_prediction", "shots", "exact", "noise", "unigram_cross_entropy", "break_even_p2q",
                "check", "windows", "measure_reset"):
        assert key in result, key
    assert result["windows"] == [0, 1, 2, 3, 6]
    # the hardware sections: T = 2 = 2^1 leaves no unused index code, so the controlled SELECT is built
    assert result["select"] == "controlled" and set(result["select_constructions"]) == {"controlled"}
    assert set(result["targets"]) == {"quantinuum", "ionq"}
    assert all(row["native_only"] and row["native_two_qubit_gates"] > 0 for row in result["targets"].values())
    assert result["targets"]["quantinuum"]["hqc_per_prediction"] > 5
    assert result["targets"]["ionq"]["hqc_per_prediction"] is None
    assert sorted(result["qasm"]["files"]) == ["window0_X.qasm", "window0_Y.qasm", "window0_Z.qasm"]
    assert all((out / "qasm" / name).read_text().startswith("OPENQASM 3") for name in result["qasm"]["files"])
    assert result["trajectories"] is None and result["device_runs"] is None and "skipped" in result["fault_tolerant"]
    assert result["qubits"]["total"] == 2 + 2 * 1 + 2 and result["qubits"]["total_measure_reset"] == 5
    assert result["two_qubit_gates"] == result["gates"]["CNOT"] > 0

    # the numbers are the trainer's: the model's own forward on the same windows
    windows = splits["test"][[0, 1, 2, 3, 6]]
    with torch.no_grad():
        logits = model(windows[:, :2])
    ce = float(torch.nn.functional.cross_entropy(logits, windows[:, 2]))
    assert abs(result["exact"]["cross_entropy"] - ce) < 1e-5
    assert abs(result["success_probability"]["mean"] - float(model.extra_metrics()["postselection"])) < 1e-5
    p = result["success_probability"]
    assert p["min"] <= p["mean"] <= p["max"] and p["std"] >= 0
    shots = result["raw_shots_per_prediction"]
    assert shots["at_mean_p"] == pytest.approx(3 / (0.05**2 * p["mean"]))
    assert shots["mean_over_windows"] >= shots["at_mean_p"]            # Jensen: mean of 1/p >= 1/mean p
    assert [row["shots"] for row in result["shots"]] == [10, 1000]
    raw = [row["raw_shots_per_prediction"] for row in result["shots"]]
    assert raw[1] == pytest.approx(100 * raw[0])
    assert abs(result["shots"][1]["cross_entropy"] - ce) < abs(result["shots"][0]["cross_entropy"] - ce) + 0.05
    assert [row["p_2q"] for row in result["noise"]] == [1e-3, 1e-2]
    assert result["noise"][0]["fidelity"] == pytest.approx((1 - 1e-3) ** result["two_qubit_gates"])
    train_targets = splits["train"][:, -1]
    unigram = torch.log((torch.bincount(train_targets, minlength=VOCAB) + 1.0) / (len(train_targets) + VOCAB))
    assert result["unigram_cross_entropy"] == pytest.approx(float(-unigram[windows[:, 2]].mean()))
    assert (result["break_even_p2q"] is None) == (result["break_even_reason"] is not None)

    check = result["check"]
    assert check["status"] == "passed" and check["windows_checked"] == 5
    assert check["max_state_error"] < TOL and check["max_success_probability_error"] < TOL
    rows = check["noise_vs_default_mixed"]["rows"]
    assert [row["window"] for row in rows] == [0, 0, 1, 1]
    assert all(row["max_expectation_error"] <= 1 - row["fidelity"] for row in rows)
    assert json.loads((out / "args.json").read_text())["status"] == "completed"
    assert json.loads((out / "metrics.json").read_text())["two_qubit_gates"] == result["two_qubit_gates"]
    assert CircuitResources.read(out).as_dict() == result


@pytest.mark.slow
def test_cli_reads_a_run_of_the_trainer(tmp_path, capsys):
    """A run folder as train_quixer_hybrid.py leaves it (its checkpoints, layerwise growth stopped at one of two
    ansatz layers, features standardised before the head) and a token folder: the circuit is the trained
    model's, inactive layer and the head's running statistics and all."""
    from quixer_rna.formats.tokens import open_tokens
    from quixer_rna.training import TrainConfig, train_model

    data, _, _, splits = write_run(tmp_path)
    config = {"embedding_dim": 8, "qubits": 2, "ansatz_layers": 2, "qsvt_degree": 2, "dropout": 0.0,
              "use_layerwise_training": True, "layerwise_epochs": 5, "normalise_features": True}
    run = tmp_path / "trained"
    train_model("quixer", config, open_tokens(data), TrainConfig(epochs=1, batch_size=8, lr=0.05, device="cpu"), run)
    state = ckpt.load_checkpoint(run / ckpt.BEST)
    assert state["model"]["angle_mask"].sum() == 4 * 2  # one active layer of 4n angles
    model = build_model("quixer", VOCAB, 2, config)
    model.load_state_dict(state["model"])
    model.eval()
    out = tmp_path / "out"
    assert script.main(["--run_dir", str(run), "--data_dir", str(data), "--output_dir", str(out), "--windows", "0:3",
                        "--check", "--shots", "10", "--noise_2q", "1e-3", "--targets", "--qasm", "0"]) == 0
    capsys.readouterr()
    result = json.loads((out / "resources.json").read_text())
    assert result["check"]["status"] == "passed" and result["check"]["max_state_error"] < TOL
    windows = splits["test"][:3]
    with torch.no_grad():
        ce = float(torch.nn.functional.cross_entropy(model(windows[:, :2]), windows[:, 2]))
    assert abs(result["exact"]["cross_entropy"] - ce) < 1e-5
    assert abs(result["success_probability"]["mean"] - float(model.extra_metrics()["postselection"])) < 1e-5


def test_cli_too_large_for_fresh_registers_checks_the_measure_reset_layout(tmp_path, capsys, monkeypatch):
    data, run, _, _ = write_run(tmp_path, tokens=31, degree=3)             # 2 + 3*5 + 2 = 19 qubits, 9 reset
    argv = ["--run_dir", str(run), "--data_dir", str(data), "--windows", "0:2", "--check", "--shots", "10",
            "--noise_2q", "1e-3", "--targets", "--qasm", "0"]
    assert script.main([*argv, "--output_dir", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "resources.json").read_text())
    check = result["check"]
    assert result["qubits"]["total"] == 19 and check["layout"] == "measure_reset" and check["status"] == "passed"
    assert check["max_success_probability_error"] < TOL and check["max_state_error_phase_aligned"] < TOL
    assert "measure_reset layout" in capsys.readouterr().out

    monkeypatch.setattr(stage, "MEASURE_RESET_CHECK_MAX_QUBITS", 8)       # too large either way: resources only
    assert script.main([*argv, "--output_dir", str(tmp_path / "out2")]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "19 qubits (9 measuring and resetting)" in err[0], err
    result = json.loads((tmp_path / "out2" / "resources.json").read_text())
    assert result["check"]["status"] == "skipped" and result["qubits"]["total"] == 19


def test_cli_bad_inputs_are_one_line_errors(tmp_path, capsys):
    data, run, _, _ = write_run(tmp_path)
    base = ["--data_dir", str(data), "--output_dir", str(tmp_path / "out")]

    (tmp_path / "empty").mkdir()
    assert script.main(["--run_dir", str(tmp_path / "empty"), *base]) == 2
    assert "not a Quixer run folder" in error_line(capsys)

    other = tmp_path / "other"
    ckpt.save_checkpoint(other / ckpt.BEST, {"identity": {"model_name": "lstm", "model_config": {}}, "model": {}})
    assert script.main(["--run_dir", str(other), *base]) == 2
    assert "'lstm' model, not a Quixer model" in error_line(capsys)

    assert script.main(["--run_dir", str(run), *base, "--windows", "10:13"]) == 2
    assert "window 12 is out of range" in error_line(capsys)

    assert script.main(["--run_dir", str(run), *base, "--device", "no.such.device"]) == 2
    assert "--device no.such.device" in error_line(capsys)

    for bad in ("0-8", "3:1", "a", ""):
        assert script.main(["--run_dir", str(run), *base, "--windows", bad]) == 2
        assert "--windows" in error_line(capsys)
    assert not (tmp_path / "out").exists()


_SCORES = {"cross_entropy": 1.7, "perplexity": 5.47, "accuracy": 0.25, "top5_accuracy": 0.75}
# A whole resources.json, its keys in the order the stage writes them.
SAMPLE_RESOURCES = {
    "run": {"run_dir": "runs/quixer", "checkpoint": "checkpoint_best.pt", "model_name": "quixer",
            "model_config": {"qubits": 2}, "vocab_size": 6, "context_length": 2},
    "model": {"qubits": 2, "ansatz_layers": 1, "degree": 2, "tokens": 2, "vocab_size": 6},
    "windows": [0, 3],
    "qubits": {"data": 2, "index_register": 1, "index_registers": 2, "index": 2, "degree": 2, "ancillas": 4,
               "total": 6, "ancillas_measure_reset": 3, "total_measure_reset": 5},
    "select": "controlled", "degree_codes": [0, 1, 3],
    "select_constructions": {"controlled": {"two_qubit_gates": 40, "depth": 90, "gates": 70,
                                            "select_two_qubit_gates": 16}},
    "gates": {"CNOT": 40, "RY": 30, "total": 70}, "two_qubit_gates": 40, "single_qubit_gates": 30, "depth": 90,
    "two_qubit_gates_by_part": {"select_rotations": 16, "readout": 2}, "gate_set": "CNOT + rotations",
    "gate_counts_refer_to": "fresh index registers",
    "measure_reset": {"qubits": 5, "gates": {"CNOT": 40, "total": 70}, "two_qubit_gates": 40, "depth": 95,
                      "mid_circuit_measurements": 2},
    "counting_seconds": 0.5,
    "success_probability": {"mean": 0.6, "std": 0.01, "min": 0.59, "max": 0.61},
    "raw_shots_per_prediction": {"eps": 0.01, "at_mean_p": 50000.0, "mean_over_windows": 50010.0},
    "exact": {**_SCORES, "success_probability": 0.6},
    "shots": [{"shots": 1000, **_SCORES, "raw_shots_per_prediction": 5001.0}],
    "noise_model": "global depolarising approximation",
    "noise": [{"p_2q": 0.001, "fidelity": 0.96, "success_probability": 0.58, "expectation_scale": 0.99, **_SCORES}],
    "unigram_cross_entropy": 1.8, "break_even_p2q": None, "break_even_reason": "no rate reaches the unigram",
    "check": None, "half_signal_p2q": 0.02, "trajectories": None,
    "qasm": {"folder": "qasm", "files": ["window0_Z.qasm"], "layout": "measure_reset", "post_selection": "all 0"},
    "targets": {"ionq": {
        "target": "ionq", "device": "IonQ", "error_source": "spec", "native_two_qubit_gate": "rxx",
        "native_two_qubit_gates": 38, "one_qubit_gates": 90, "measurements": 5, "resets": 2, "depth": 120,
        "estimated_success": 0.9, "log10_estimated_success": -0.046, "native_only": True, "counts": {"rxx": 38},
        "compile_seconds": 0.1, "logical_two_qubit_gates": 40, "equivalent_p2q": 0.0026, "noise_source": "global",
        "success_probability": 0.55, "cross_entropy": 1.75, "raw_shots_per_prediction": 54500.0,
        "break_even_criterion": "half_signal", "break_even_native_p2q": None,
        "global_break_even_native_p2q": 0.021, "hqc_per_prediction": None}},
    "device_runs": None, "fault_tolerant": {"skipped": "no unused index code"},
    "sampling": {"per_transcript": 1, "transcripts": 2}, "window_weights": [0.5, 1.5],
}


def test_circuit_resources_round_trip_through_resources_json(tmp_path):
    resources = CircuitResources(**SAMPLE_RESOURCES)
    resources.write(tmp_path)
    written = json.loads((tmp_path / "resources.json").read_text())
    assert written == SAMPLE_RESOURCES and list(written) == list(SAMPLE_RESOURCES)
    assert CircuitResources.read(tmp_path) == resources
    # without --windows_per_transcript the sampling keys are absent; a section whose flag was off is null
    unsampled = dataclasses.replace(resources, sampling=None, window_weights=None)
    unsampled.write(tmp_path)
    written = json.loads((tmp_path / "resources.json").read_text())
    assert "sampling" not in written and "window_weights" not in written
    assert written["trajectories"] is None and written["check"] is None and written["break_even_p2q"] is None
    assert CircuitResources.read(tmp_path) == unsampled


def test_a_missing_or_mistyped_resources_field_is_one_line_naming_file_and_field(tmp_path):
    path = tmp_path / "resources.json"
    for change, message in ((lambda r: r["qubits"].pop("total"), "no 'qubits.total'"),
                            (lambda r: r.pop("targets"), "no 'targets'"),
                            (lambda r: r["shots"][0].update(shots="many"),
                             "'shots.0.shots' is 'many', expected an integer")):
        broken = json.loads(json.dumps(SAMPLE_RESOURCES))
        change(broken)
        path.write_text(json.dumps(broken))
        with pytest.raises(UserError) as error:
            CircuitResources.read(tmp_path)
        text = str(error.value)
        assert text.startswith(f"{path}: {message}; ") and "quixer_circuit.py" in text and "\n" not in text


def test_every_flag_is_a_circuit_config_field_and_the_record_keeps_it_by_name():
    parser = script.build_parser()
    args = parser.parse_args(["--run_dir", "r", "--data_dir", "d", "--output_dir", "o", "--shots", "5", "7",
                              "--targets", "--device_targets", "quantinuum", "--check", "--seed", "3"])
    config = config_from_args(CircuitConfig, args)
    assert (config.shots, config.targets, config.device_targets, config.check, config.seed) == (
        (5, 7), (), ("quantinuum",), True, 3)
    assert config.noise_2q == (1e-4, 1e-3, 1e-2) and config.select == "reduced" and config.windows is None
    dests = [action.dest for action in parser._actions if action.dest != "help"]
    record = config_record(config)
    assert list(record) == [dest for dest in dests if dest != "log_level"]
    assert record == {name: tuple(value) if isinstance(value, list) else value
                      for name, value in vars(args).items() if name != "log_level"}
    groups = {group.title: [action.dest for action in group._group_actions] for group in parser._action_groups}
    assert groups["inputs and output"][0] == "run_dir" and groups["circuit"][0] == "device"
    assert groups["hardware"][0] == "trajectories" and groups["hardware"][-1] == "ft_precision"


def test_parse_windows():
    assert parse_windows("0:3") == [0, 1, 2]
    assert parse_windows("5") == [5]
    assert parse_windows("0:2, 7,1:3") == [0, 1, 7, 2]

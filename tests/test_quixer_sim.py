"""The simulator against PennyLane's default.qubit: each token circuit's statevector, the polynomial
state psi of the LCU built from PennyLane's own circuit matrices, and the 3n Pauli expectations after the
readout layer. These tests are the proof that the simulator computes Quixer's circuits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quixer_rna.quixer_sim import (
    apply_circuit,
    circuit14_gates,
    lcu_powers,
    pauli_expectations,
    polynomial_state,
    zero_planes,
)

qml = pytest.importorskip("pennylane")

TOL = 1e-5


pytestmark = pytest.mark.usefixtures("one_thread")


def _pl_circuit(angles: np.ndarray, gates) -> None:
    for g, (kind, p, q) in enumerate(gates):
        if kind == "ry":
            qml.RY(angles[g], wires=p)
        else:
            qml.CRX(angles[g], wires=[p, q])


def _pl_matrix(angles: np.ndarray, gates, n: int) -> np.ndarray:
    return qml.matrix(_pl_circuit, wire_order=range(n))(angles, gates)


def _complex(state: torch.Tensor) -> np.ndarray:
    """[2, N, ...] real/imaginary planes -> complex numpy [N, ...]."""
    return state[0].detach().double().numpy() + 1j * state[1].detach().double().numpy()


def test_circuit14_gate_order_matches_the_spec():
    gates = circuit14_gates(4, 1)
    assert gates[:4] == [("ry", w, -1) for w in range(4)]
    assert gates[4:8] == [("crx", 3, 0), ("crx", 2, 3), ("crx", 1, 2), ("crx", 0, 1)]
    assert gates[8:12] == [("ry", w, -1) for w in range(4)]
    assert gates[12:] == [("crx", 3, 2), ("crx", 0, 3), ("crx", 1, 0), ("crx", 2, 1)]
    assert len(circuit14_gates(6, 4)) == 96
    with pytest.raises(ValueError):
        circuit14_gates(1, 1)


@pytest.mark.parametrize("n", [3, 4, 6])
def test_token_circuit_statevectors_match_pennylane(n):
    torch.manual_seed(n)
    gates = circuit14_gates(n, 2)
    angles = torch.rand(len(gates), 5) * 4 * np.pi - 2 * np.pi
    dev = qml.device("default.qubit", wires=n)

    @qml.qnode(dev)
    def state(a):
        _pl_circuit(a, gates)
        return qml.state()

    reference = np.stack([np.asarray(state(angles[:, b].double().numpy())) for b in range(5)], axis=-1)
    ours = apply_circuit(zero_planes(n, 5), angles, n, gates)
    assert np.abs(_complex(ours) - reference).max() < TOL
    # the adjoint path: M = U_t alone (one token, b = 1), first power
    adjoint = lcu_powers(angles.unsqueeze(-1), torch.ones(1), torch.zeros(1), n, gates, 1)[0]
    assert np.abs(_complex(adjoint) - reference).max() < TOL


@pytest.mark.parametrize("n, layers, tokens, degree", [(3, 2, 3, 2), (4, 2, 5, 3), (6, 1, 3, 2)])
def test_polynomial_state_and_expectations_match_pennylane(n, layers, tokens, degree):
    torch.manual_seed(10 * n + tokens)
    windows = 2
    gates, readout_gates = circuit14_gates(n, layers), circuit14_gates(n, 1)
    angles = torch.randn(len(gates), windows, tokens)
    b_re, b_im = torch.randn(tokens), torch.randn(tokens)
    norm = torch.sqrt(b_re**2 + b_im**2).sum()
    b_re, b_im = b_re / norm, b_im / norm
    coeffs = torch.rand(degree + 1)
    readout = torch.randn(len(readout_gates))

    psi = polynomial_state(angles, b_re, b_im, coeffs, n, gates, chunk=1)
    normalised = psi / torch.sqrt((psi * psi).sum((0, 1)))
    features = pauli_expectations(apply_circuit(normalised, readout.unsqueeze(-1), n, readout_gates), n)

    dev = qml.device("default.qubit", wires=n)

    @qml.qnode(dev)
    def measured(state):
        qml.StatePrep(state, wires=range(n))
        _pl_circuit(readout.double().numpy(), readout_gates)
        return ([qml.expval(qml.PauliX(w)) for w in range(n)] + [qml.expval(qml.PauliY(w)) for w in range(n)]
                + [qml.expval(qml.PauliZ(w)) for w in range(n)])

    b = b_re.double().numpy() + 1j * b_im.double().numpy()
    c = coeffs.double().numpy()
    for w in range(windows):
        m = sum(b[t] * _pl_matrix(angles[:, w, t].double().numpy(), gates, n) for t in range(tokens))
        term = np.zeros(2**n, dtype=complex)
        term[0] = 1.0
        expected = c[0] * term
        for k in range(1, degree + 1):
            term = m @ term
            expected = expected + c[k] * term
        expected = expected / np.abs(c).sum()
        assert np.abs(_complex(psi)[:, w] - expected).max() < TOL
        reference = np.array(measured(expected / np.linalg.norm(expected)), dtype=float)
        assert np.abs(features[:, w].double().numpy() - reference).max() < TOL


def test_adjoint_gradients_match_finite_differences():
    torch.manual_seed(0)
    gates = circuit14_gates(3, 1)
    angles = torch.randn(len(gates), 3, 2, dtype=torch.float64, requires_grad=True)
    b_re = torch.randn(2, dtype=torch.float64, requires_grad=True)
    b_im = torch.randn(2, dtype=torch.float64, requires_grad=True)
    # chunk=2 with 3 windows also covers a ragged last chunk
    assert torch.autograd.gradcheck(lambda a, r, i: lcu_powers(a, r, i, 3, gates, 3, chunk=2), (angles, b_re, b_im),
                                    fast_mode=True)


def test_adjoint_gradients_match_plain_autograd_in_float32():
    """The adjoint backward recomputes states by inverse gates; in float32 it must stay as accurate as
    differentiating the stored forward, at the real size (n=6, L=4, d=3)."""
    torch.manual_seed(1)
    n, gates, tokens = 6, circuit14_gates(6, 4), 4
    angles = (0.5 * torch.randn(len(gates), 2, tokens)).requires_grad_()
    b_re, b_im = torch.rand(tokens, requires_grad=True), torch.rand(tokens, requires_grad=True)
    weights = torch.randn(3, 2, 2**n, 2)
    (lcu_powers(angles, b_re, b_im, n, gates, 3) * weights).sum().backward()
    adjoint = [angles.grad.clone(), b_re.grad.clone(), b_im.grad.clone()]

    a2, r2, i2 = (t.detach().clone().requires_grad_() for t in (angles, b_re, b_im))
    v = zero_planes(n, 2)
    total = torch.zeros(())
    for k in range(3):
        outs = [apply_circuit(v, a2[:, :, t], n, gates) for t in range(tokens)]
        v = torch.stack([sum(r2[t] * o[0] - i2[t] * o[1] for t, o in enumerate(outs)),
                         sum(r2[t] * o[1] + i2[t] * o[0] for t, o in enumerate(outs))])
        total = total + (v * weights[k]).sum()
    total.backward()
    for ours, reference in zip(adjoint, [a2.grad, r2.grad, i2.grad]):
        assert torch.allclose(ours, reference, atol=1e-5, rtol=1e-4)


def test_chunking_does_not_change_results():
    torch.manual_seed(2)
    gates = circuit14_gates(3, 2)
    angles = torch.randn(len(gates), 5, 3)
    b_re, b_im = torch.rand(3), torch.rand(3)
    whole = lcu_powers(angles, b_re, b_im, 3, gates, 2, chunk=5)
    assert torch.allclose(whole, lcu_powers(angles, b_re, b_im, 3, gates, 2, chunk=2), atol=1e-6)
    with pytest.raises(ValueError):
        lcu_powers(angles[:-1], b_re, b_im, 3, gates, 2)


def test_powers_of_unitaries_keep_the_norm_bounded():
    """||M^k|0>|| <= (sum |b_t|)^k = 1 for b normalised in l1: the post-selection probability is <= 1."""
    torch.manual_seed(3)
    gates = circuit14_gates(4, 2)
    angles = 3 * torch.randn(len(gates), 6, 4)
    b_re, b_im = torch.randn(4), torch.randn(4)
    norm = torch.sqrt(b_re**2 + b_im**2).sum()
    powers = lcu_powers(angles, b_re / norm, b_im / norm, 4, gates, 3)
    norms = (powers * powers).sum((1, 2))
    assert (norms <= 1 + 1e-5).all() and (norms > 0).all()

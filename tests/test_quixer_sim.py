"""The simulator against PennyLane's default.qubit: each token circuit's statevector, the polynomial
state psi of the LCU built from PennyLane's own circuit matrices, and the 3n Pauli expectations after the
readout layer. These tests are the proof that the simulator computes Quixer's circuits.

The `gpu`-marked tests run on `--device` (default cpu; `pytest -m gpu --device cuda` runs them on CUDA)
against references computed on the CPU, in float64 where the reference is ours. On CUDA the gate loops are
real CUDA graphs; on the CPU a fake capture drives the same state machine."""

from __future__ import annotations

import ctypes
import functools
import warnings

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fixtures import DeviceRecorder
from quixer_rna.quixer_sim import (
    GRAPH_WARMUP_CALLS,
    apply_circuit,
    chunk_windows,
    circuit14_gates,
    clear_simulator_cache,
    lcu_powers,
    pauli_expectations,
    polynomial_state,
    run_circuit,
    simulation_bytes_per_window,
    simulation_total_bytes,
    simulator_cache_info,
    zero_planes,
)
from quixer_rna.quixer_sim import graphs
from quixer_rna.quixer_sim.workspace import Workspace

TOL = 1e-5


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def qml():
    """PennyLane, imported only where a test compares with it (it takes seconds)."""
    return pytest.importorskip("pennylane")


def _pl_circuit(qml, angles: np.ndarray, gates) -> None:
    for g, (kind, p, q) in enumerate(gates):
        if kind == "ry":
            qml.RY(angles[g], wires=p)
        else:
            qml.CRX(angles[g], wires=[p, q])


def _pl_matrix(qml, angles: np.ndarray, gates, n: int) -> np.ndarray:
    return qml.matrix(functools.partial(_pl_circuit, qml), wire_order=range(n))(angles, gates)


def _complex(state: torch.Tensor) -> np.ndarray:
    """[2, N, ...] real/imaginary planes (on any device) -> complex numpy [N, ...]."""
    state = state.detach().cpu().double()
    return state[0].numpy() + 1j * state[1].numpy()


def _cpu64(tensors):
    """Results on any device as float64 on the CPU, to compare with a reference."""
    return [t.detach().to("cpu", torch.float64) for t in tensors]


def test_circuit14_gate_order_matches_the_spec():
    gates = circuit14_gates(4, 1)
    assert gates[:4] == [("ry", w, -1) for w in range(4)]
    assert gates[4:8] == [("crx", 3, 0), ("crx", 2, 3), ("crx", 1, 2), ("crx", 0, 1)]
    assert gates[8:12] == [("ry", w, -1) for w in range(4)]
    assert gates[12:] == [("crx", 3, 2), ("crx", 0, 3), ("crx", 1, 0), ("crx", 2, 1)]
    assert len(circuit14_gates(6, 4)) == 96
    with pytest.raises(ValueError):
        circuit14_gates(1, 1)


@pytest.mark.gpu
@pytest.mark.parametrize("n", [3, 4, 6])
def test_token_circuit_statevectors_match_pennylane(n, device, qml):
    torch.manual_seed(n)
    gates = circuit14_gates(n, 2)
    angles = torch.rand(len(gates), 5) * 4 * np.pi - 2 * np.pi
    dev = qml.device("default.qubit", wires=n)

    @qml.qnode(dev)
    def state(a):
        _pl_circuit(qml, a, gates)
        return qml.state()

    reference = np.stack([np.asarray(state(angles[:, b].double().numpy())) for b in range(5)], axis=-1)
    angles, start = angles.to(device), zero_planes(n, 5, device=device)
    ours = apply_circuit(start, angles, n, gates)
    assert np.abs(_complex(ours) - reference).max() < TOL
    # the workspace (adjoint, CUDA-graph-ready) circuit, two states per chunk
    assert np.abs(_complex(run_circuit(start, angles, n, gates, chunk=2)) - reference).max() < TOL
    # the adjoint path: M = U_t alone (one token, b = 1), first power
    adjoint = lcu_powers(angles.unsqueeze(-1), torch.ones(1, device=device), torch.zeros(1, device=device), n,
                         gates, 1)[0]
    assert np.abs(_complex(adjoint) - reference).max() < TOL


@pytest.mark.gpu
@pytest.mark.parametrize("n, layers, tokens, degree", [(3, 2, 3, 2), (4, 2, 5, 3), (6, 1, 3, 2)])
def test_polynomial_state_and_expectations_match_pennylane(n, layers, tokens, degree, device, qml):
    torch.manual_seed(10 * n + tokens)
    windows = 2
    gates, readout_gates = circuit14_gates(n, layers), circuit14_gates(n, 1)
    angles = torch.randn(len(gates), windows, tokens)
    b_re, b_im = torch.randn(tokens), torch.randn(tokens)
    norm = torch.sqrt(b_re**2 + b_im**2).sum()
    b_re, b_im = b_re / norm, b_im / norm
    coeffs = torch.rand(degree + 1)
    readout = torch.randn(len(readout_gates))

    on = [t.to(device) for t in (angles, b_re, b_im, coeffs, readout)]
    psi = polynomial_state(*on[:4], n, gates, chunk=1)
    normalised = psi / torch.sqrt((psi * psi).sum((0, 1)))
    features = pauli_expectations(apply_circuit(normalised, on[4].unsqueeze(-1), n, readout_gates), n).cpu()

    dev = qml.device("default.qubit", wires=n)

    @qml.qnode(dev)
    def measured(state):
        qml.StatePrep(state, wires=range(n))
        _pl_circuit(qml, readout.double().numpy(), readout_gates)
        return ([qml.expval(qml.PauliX(w)) for w in range(n)] + [qml.expval(qml.PauliY(w)) for w in range(n)]
                + [qml.expval(qml.PauliZ(w)) for w in range(n)])

    b = b_re.double().numpy() + 1j * b_im.double().numpy()
    c = coeffs.double().numpy()
    for w in range(windows):
        m = sum(b[t] * _pl_matrix(qml, angles[:, w, t].double().numpy(), gates, n) for t in range(tokens))
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


@pytest.mark.gpu
def test_adjoint_gradients_match_plain_autograd_in_float32(device):
    """The adjoint backward recomputes states by inverse gates; in float32 it must stay as accurate as
    differentiating the stored forward (here in float64 on the CPU), at the real size (n=6, L=4, d=3)."""
    torch.manual_seed(1)
    n, gates, tokens = 6, circuit14_gates(6, 4), 4
    angles = (0.5 * torch.randn(len(gates), 2, tokens)).to(device).requires_grad_()
    b_re, b_im = (torch.rand(tokens).to(device).requires_grad_() for _ in range(2))
    weights = torch.randn(3, 2, 2**n, 2)
    (lcu_powers(angles, b_re, b_im, n, gates, 3) * weights.to(device)).sum().backward()
    adjoint = _cpu64([angles.grad, b_re.grad, b_im.grad])

    a2, r2, i2 = (t.detach().to("cpu", torch.float64).requires_grad_() for t in (angles, b_re, b_im))
    weights = weights.double()
    v = zero_planes(n, 2, torch.float64)
    total = torch.zeros((), dtype=torch.float64)
    for k in range(3):
        outs = [apply_circuit(v, a2[:, :, t], n, gates) for t in range(tokens)]
        v = torch.stack([sum(r2[t] * o[0] - i2[t] * o[1] for t, o in enumerate(outs)),
                         sum(r2[t] * o[1] + i2[t] * o[0] for t, o in enumerate(outs))])
        total = total + (v * weights[k]).sum()
    total.backward()
    for ours, reference in zip(adjoint, [a2.grad, r2.grad, i2.grad]):
        assert torch.allclose(ours, reference, atol=1e-5, rtol=1e-4)


@pytest.mark.gpu
def test_chunking_does_not_change_results(device):
    torch.manual_seed(2)
    gates = circuit14_gates(3, 2)
    angles = torch.randn(len(gates), 5, 3).to(device)
    b_re, b_im = torch.rand(3).to(device), torch.rand(3).to(device)
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


# ----------------------------------------------------------------------------------------------------
# Memory budgets, chunking, the static-buffer (CUDA-graph-ready) loops, device hygiene.

@pytest.fixture(autouse=True)
def fresh_simulator_cache():
    """Every test starts and ends without cached workspaces (so graph-state counts are its own)."""
    clear_simulator_cache()
    yield
    clear_simulator_cache()


def _problem(n=3, layers=2, windows=7, tokens=3, dtype=torch.float64, seed=4, device="cpu"):
    torch.manual_seed(seed)
    gates = circuit14_gates(n, layers)
    # permuted like the model's angles ([W, T, G] memory viewed as [G, W, T]): the simulator takes any strides
    angles = torch.randn(windows, tokens, len(gates), dtype=dtype).to(device).permute(2, 0, 1)
    b_re, b_im = (torch.rand(tokens, dtype=dtype).to(device) for _ in range(2))
    return gates, angles, b_re, b_im


def _forward_backward(gates, angles, b_re, b_im, n, degree, **kwargs):
    """lcu_powers' output and the gradients of a fixed random weighting of it."""
    leaves = [t.detach().clone().requires_grad_() for t in (angles, b_re, b_im)]
    out = lcu_powers(*leaves, n, gates, degree, **kwargs)
    weights = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(9))
    (out * weights.to(out.device)).sum().backward()
    return [out.detach()] + [t.grad for t in leaves]


def test_bytes_formula_and_chunk_choice():
    n, tokens, degree, gates = 4, 5, 3, 32
    dim = 2**n
    held = 2 * degree * dim * tokens + 4 * degree * dim + gates * tokens
    work = 9 * dim * tokens + 3 * gates * tokens + 8 * dim
    assert simulation_bytes_per_window(n, tokens, degree, num_gates=gates, part="held") == 4 * held
    assert simulation_bytes_per_window(n, tokens, degree, num_gates=gates, part="chunk") == 4 * work
    assert simulation_bytes_per_window(n, tokens, degree, torch.float64, num_gates=gates) == 8 * (held + work)
    assert simulation_total_bytes(10, n, tokens, degree, num_gates=gates, chunk=3) == 4 * (10 * held + 3 * work)
    assert simulation_total_bytes(10, n, tokens, degree, num_gates=gates) == 4 * 10 * (held + work)
    # the budget decides: room for exactly c workspaces after every window's held part -> c (balanced)
    for c, expected in [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 5), (9, 5), (10, 10), (99, 10)]:
        budget = 4 * (10 * held + c * work)
        assert chunk_windows(10, n, tokens, degree, torch.float32, "cpu", budget, num_gates=gates) == expected
    # below the held part alone: still one window at a time (the caller refuses such configurations)
    assert chunk_windows(10, n, tokens, degree, torch.float32, "cpu", 1.0, num_gates=gates) == 1
    # CPU stays cache-sized (balanced: 1000 windows -> 16 chunks of 63); CUDA takes all the budget allows
    plenty = 1e15
    assert chunk_windows(1000, n, tokens, degree, torch.float32, "cpu", plenty, num_gates=gates) == 63
    assert chunk_windows(1000, n, tokens, degree, torch.float32, "cuda", plenty, num_gates=gates) == 1000
    assert chunk_windows(1000, n, tokens, degree, torch.float32, "cuda", 4 * (1000 * held + 300 * work),
                         num_gates=gates) == 250
    # the paper-sized circuit: saved outputs dominate the held part; at n=14 they are ~12 GiB per 1024 windows
    paper = simulation_total_bytes(1024, 6, 32, 3, num_gates=96)
    assert 150 * 2**20 < paper < 250 * 2**20
    assert simulation_total_bytes(1024, 14, 32, 3, num_gates=224, chunk=1) > 12 * 2**30


@pytest.mark.gpu
@pytest.mark.parametrize("chunks", [1, 2, 3, 7])
def test_memory_budget_chunking_matches_all_at_once(chunks, device):
    n, degree = 3, 2
    gates, angles, b_re, b_im = _problem(n=n, device=device)
    windows, tokens = angles.shape[1], angles.shape[2]
    whole = _forward_backward(gates, angles, b_re, b_im, n, degree, chunk=windows)
    held = simulation_bytes_per_window(n, tokens, degree, torch.float64, num_gates=len(gates), part="held")
    work = simulation_bytes_per_window(n, tokens, degree, torch.float64, num_gates=len(gates), part="chunk")
    budget = windows * held + chunks * work          # room for `chunks` windows at a time (7 = 3+3+1 at 3)
    chosen = chunk_windows(windows, n, tokens, degree, torch.float64, device, budget, num_gates=len(gates))
    assert chosen == {1: 1, 2: 2, 3: 3, 7: 7}[chunks]
    chunked = _forward_backward(gates, angles, b_re, b_im, n, degree, budget_bytes=budget)
    assert {info["chunk"] for info in simulator_cache_info()} == {windows, chosen}
    for ours, reference in zip(chunked, whole):
        assert torch.allclose(ours, reference, rtol=1e-12, atol=1e-12)
    # evaluation (no grad) keeps no per-power outputs and gives the same powers
    with torch.no_grad():
        assert torch.allclose(lcu_powers(angles, b_re, b_im, n, gates, degree, budget_bytes=budget), whole[0],
                              rtol=1e-12, atol=1e-12)


class _FakeGraphs:
    """Drives the CUDA-graph state machine on CPU: warm-ups run the loop, a 'capture' records it WITHOUT
    running it (as CUDA capture does), and replays run it."""

    def __init__(self, monkeypatch, fail: bool = False):
        self.warm_ups, self.captures, self.replays = 0, 0, 0
        self.fail = fail
        monkeypatch.setattr(graphs, "_graphs_possible", lambda device: True)
        monkeypatch.setattr(graphs, "_stream_capturing", lambda device: False)
        monkeypatch.setattr(graphs, "_warm_up", self._warm_up)
        monkeypatch.setattr(graphs, "_capture", self._capture)

    def _warm_up(self, fn, device):
        self.warm_ups += 1
        fn()

    def _capture(self, fn, device):
        if self.fail:
            raise RuntimeError("operation not permitted when stream is capturing")
        self.captures += 1

        def replay():
            self.replays += 1
            fn()
        return replay


def _plain_autograd_powers(angles, b_re, b_im, n, gates, degree):
    """The reference: every gate differentiated by autograd (no adjoint, no buffers, no chunks)."""
    v = zero_planes(n, angles.shape[1], angles.dtype)
    powers = []
    for _ in range(degree):
        outs = [apply_circuit(v, angles[:, :, t], n, gates) for t in range(angles.shape[2])]
        v = torch.stack([sum(b_re[t] * o[0] - b_im[t] * o[1] for t, o in enumerate(outs)),
                         sum(b_re[t] * o[1] + b_im[t] * o[0] for t, o in enumerate(outs))])
        powers.append(v)
    return torch.stack(powers)


def _same_kernels(ours: torch.Tensor, eager: torch.Tensor, device: torch.device) -> bool:
    """Graphed against eager: the same kernels on the same buffers, bit for bit on the CPU; on CUDA to
    float64 rounding (the captured kernels are the eager ones, but their scheduling is the driver's)."""
    if device.type == "cpu":
        return torch.equal(ours, eager)
    return torch.allclose(ours, eager, rtol=1e-12, atol=1e-15)


@pytest.mark.gpu
def test_graph_ready_static_buffers_equal_the_plain_path(monkeypatch, device):
    n, degree = 3, 3
    gates, angles, b_re, b_im = _problem(n=n, windows=5, tokens=4)
    leaves = [t.detach().clone().requires_grad_() for t in (angles, b_re, b_im)]
    plain = _plain_autograd_powers(*leaves, n, gates, degree)
    weights = torch.randn(plain.shape, dtype=plain.dtype, generator=torch.Generator().manual_seed(9))
    (plain * weights).sum().backward()
    reference = [plain.detach()] + [t.grad for t in leaves]
    inputs = [t.to(device) for t in (angles, b_re, b_im)]
    eager = _forward_backward(gates, *inputs, n, degree, chunk=2, use_cuda_graphs=False)

    fake = _FakeGraphs(monkeypatch) if device.type == "cpu" else None   # on CUDA: real graphs
    # 5 windows in chunks of 2: the last chunk is short and runs padded in the same workspace
    for step in range(3):
        graphed = _forward_backward(gates, *inputs, n, degree, chunk=2, use_cuda_graphs=True)
        for ours, ref, same in zip(graphed, reference, eager):
            assert torch.allclose(ours.cpu(), ref, rtol=1e-10, atol=1e-12)
            assert _same_kernels(ours, same, device)
    # one workspace, each loop warmed up GRAPH_WARMUP_CALLS times, captured once, then only replayed
    [info] = simulator_cache_info()
    assert info["chunk"] == 2 and info["forward"] == info["adjoint"] == "graph" and info["captures"] == 2
    if fake is not None:
        calls_per_loop = 3 * 3 * degree          # 3 steps x 3 chunks x degree powers
        assert fake.warm_ups == 2 * GRAPH_WARMUP_CALLS and fake.captures == 2
        assert fake.replays == 2 * (calls_per_loop - GRAPH_WARMUP_CALLS)


def test_failed_capture_falls_back_to_eager(monkeypatch):
    n, degree = 3, 2
    gates, angles, b_re, b_im = _problem(n=n, windows=4)
    eager = _forward_backward(gates, angles, b_re, b_im, n, degree, chunk=4, use_cuda_graphs=False)
    clear_simulator_cache()
    _FakeGraphs(monkeypatch, fail=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            graphed = _forward_backward(gates, angles, b_re, b_im, n, degree, chunk=4, use_cuda_graphs=True)
            for ours, same in zip(graphed, eager):
                assert torch.equal(ours, same)
    assert sum("capture failed" in str(w.message) for w in caught) == 2   # once per loop, then eager for good
    [info] = simulator_cache_info()
    assert info["forward"] == info["adjoint"] == "failed"


@pytest.mark.parametrize("chunk", [None, 2])
def test_simulator_on_meta_creates_nothing_on_another_device(chunk):
    """The whole simulator, forward and backward, with every input on `meta`: any tensor made on the CPU (a
    torch.tensor(python value), a default-device factory) would be a host round trip on CUDA."""
    n, gates, readout_gates = 3, circuit14_gates(3, 2), circuit14_gates(3, 1)
    with DeviceRecorder() as recorder:
        angles = torch.randn(5, 4, len(gates), device="meta").permute(2, 0, 1).requires_grad_()
        b_re, b_im = (torch.rand(4, device="meta", requires_grad=True) for _ in range(2))
        coeffs = torch.rand(4, device="meta", requires_grad=True)
        readout = torch.randn(len(readout_gates), device="meta", requires_grad=True)
        psi = polynomial_state(angles, b_re, b_im, coeffs, n, gates, chunk=chunk, use_cuda_graphs=True)
        psi = psi / torch.sqrt((psi * psi).sum((0, 1)).clamp_min(1e-30))
        psi = run_circuit(psi, readout.unsqueeze(-1), n, readout_gates, chunk=chunk, use_cuda_graphs=True)
        features = pauli_expectations(apply_circuit(psi, readout.unsqueeze(-1), n, readout_gates), n)
        features.sum().backward()
    assert set(recorder.devices) == {"meta"}, {k: sorted(v) for k, v in recorder.devices.items() if k != "meta"}
    assert "aten.addcmul_.default" in recorder.devices["meta"]   # the adjoint loop ran under the recorder
    assert angles.grad is not None and angles.grad.device.type == "meta"


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _malloc_in_use():
    """Bytes glibc's malloc has handed out (heap + mmapped chunks): where torch's CPU tensors live."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    return lambda: (lambda m: m.uordblks + m.hblkhd)(mallinfo2())


class _PeakSampler(TorchDispatchMode):
    def __init__(self, in_use):
        super().__init__()
        self.in_use, self.start = in_use, in_use()
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.peak = max(self.peak, self.in_use() - self.start)
        return out


def _cuda_peak(step, device: torch.device) -> int:
    """Peak bytes the CUDA allocator handed out during step(), above what was allocated before it."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - start


@pytest.mark.gpu
@pytest.mark.parametrize("chunk", [None, 8])
def test_bytes_estimate_matches_the_measured_peak(chunk, device):
    """simulation_total_bytes against the real peak over one forward + backward. On the CPU the peak of
    malloc'd bytes (sampled after every aten op), within 5% once the workspace's host-side view metadata (a
    fixed ~15 KB per gate, measured here; no device memory) is taken off; on CUDA the allocator's peak at
    1024 windows x 32 tokens, within 5% below and 10% above (it rounds and does not always split blocks)."""
    cuda = device.type == "cuda"
    in_use = None if cuda else _malloc_in_use()
    if not cuda and in_use is None:
        pytest.skip("needs glibc's mallinfo2 to measure CPU allocations")
    n, degree, gates = 6, 3, circuit14_gates(6, 1)
    windows, tokens = (1024, 32) if cuda else (64, 16)
    used_chunk = chunk or chunk_windows(windows, n, tokens, degree, device=device, num_gates=len(gates),
                                        budget_bytes=1e15)
    torch.manual_seed(5)
    angles = torch.randn(windows, tokens, len(gates)).to(device).permute(2, 0, 1).requires_grad_()
    b_re, b_im = (torch.rand(tokens).to(device).requires_grad_() for _ in range(2))

    def step():
        out = lcu_powers(angles, b_re, b_im, n, gates, degree, chunk)
        out.backward(torch.ones_like(out))   # the incoming gradient is part of the estimate

    estimate = simulation_total_bytes(windows, n, tokens, degree, num_gates=len(gates), chunk=used_chunk)
    if cuda:
        step()   # cuBLAS takes a workspace per thread from the allocator on first use: not the simulator's
        clear_simulator_cache()
        angles.grad = b_re.grad = b_im.grad = None
        peak = _cuda_peak(step, device)
        assert 0.95 < peak / estimate < 1.10, (peak, estimate)
        return
    before = in_use()
    workspace = Workspace(torch.zeros(()), n, tuple(gates), used_chunk, tokens)
    metadata = in_use() - before - workspace.nbytes
    del workspace
    with _PeakSampler(in_use) as sampler:
        step()
    assert 0 < metadata < 0.25 * estimate
    assert 0.95 < (sampler.peak - metadata) / estimate < 1.05, (sampler.peak, metadata, estimate)


def _pauli_reference(state, qubits):
    """The per-wire formula pauli_expectations had: <X_i> = 2 sum Re(conj(a0) a1) over wire i's halves, etc."""
    xs, ys, zs = [], [], []
    for w in range(qubits):
        v = state.view(2, 2**w, 2, 2 ** (qubits - w - 1), state.shape[-1])
        r0, r1, m0, m1 = v[0, :, 0], v[0, :, 1], v[1, :, 0], v[1, :, 1]
        xs.append(2 * (r0 * r1 + m0 * m1).sum((0, 1)))
        ys.append(2 * (r0 * m1 - m0 * r1).sum((0, 1)))
        zs.append((r0 * r0 + m0 * m0 - r1 * r1 - m1 * m1).sum((0, 1)))
    return torch.stack(xs + ys + zs)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_vectorised_pauli_expectations_and_gradients(n):
    torch.manual_seed(n)
    state = torch.randn(2, 2**n, 4, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(3 * n, 4, dtype=torch.float64)
    ours, reference = pauli_expectations(state, n), _pauli_reference(state, n)
    assert torch.allclose(ours, reference, rtol=1e-12, atol=1e-12)
    (grad,) = torch.autograd.grad((ours * weights).sum(), state)
    (expected,) = torch.autograd.grad((reference * weights).sum(), state)
    assert torch.allclose(grad, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.gpu
@pytest.mark.parametrize("shared", [True, False])
def test_run_circuit_matches_apply_circuit(monkeypatch, shared, device):
    """The readout circuit on the workspace loops (adjoint gradients, a short padded last chunk, the
    CUDA-graph state machine: real on CUDA, driven by the fake capture on the CPU) against plain autograd
    through apply_circuit on the CPU."""
    torch.manual_seed(11)
    n, batch = 4, 5
    gates = circuit14_gates(n, 2)
    state = torch.randn(2, 2**n, batch, dtype=torch.float64)
    angles = torch.randn(len(gates), 1 if shared else batch, dtype=torch.float64)
    weights = torch.randn(2, 2**n, batch, dtype=torch.float64)

    def outputs(fn, where):
        s, a = state.to(where, copy=True).requires_grad_(), angles.to(where, copy=True).requires_grad_()
        out = fn(s, a)
        (out * weights.to(where)).sum().backward()
        return out.detach().cpu(), s.grad.cpu(), a.grad.cpu()

    reference = outputs(lambda s, a: apply_circuit(s, a, n, gates), "cpu")
    fake = _FakeGraphs(monkeypatch) if device.type == "cpu" else None
    for _ in range(3):
        ours = outputs(lambda s, a: run_circuit(s, a, n, gates, chunk=2, use_cuda_graphs=True), device)
        for mine, ref in zip(ours, reference):
            assert mine.shape == ref.shape
            assert torch.allclose(mine, ref, rtol=1e-10, atol=1e-12)
    [info] = simulator_cache_info()
    assert info["captures"] == 2 and info["forward"] == info["adjoint"] == "graph"
    assert fake is None or fake.captures == 2
    with pytest.raises(ValueError):
        run_circuit(state, angles[:, :1].expand(len(gates), 3), n, gates)


@pytest.mark.gpu
def test_float32_model_pipeline_matches_float64_on_the_cpu(device):
    """The model's whole simulator path (polynomial state, post-selection norm, readout circuit by
    run_circuit, Pauli expectations), output and every gradient, in float32 on the device against float64 on
    the CPU with the readout by plain autograd, at the paper's circuit size (n=6, L=4, d=3). On CUDA every
    one of 4 steps is checked (the readout loop, called once a step, is warmed up, captured, then replayed)
    and at the end every gate loop is a CUDA graph."""
    n, layers, degree = 6, 4, 3
    cuda = device.type == "cuda"
    windows, tokens = (64, 32) if cuda else (12, 8)
    gates, readout_gates = circuit14_gates(n, layers), circuit14_gates(n, 1)
    gen = torch.Generator().manual_seed(0)
    b = torch.rand(2, tokens, generator=gen, dtype=torch.float64)
    b = b / b.norm(dim=0).sum()           # sum_t |b_t| = 1, as the model's LCU coefficients
    inputs = [0.7 * torch.randn(windows, tokens, len(gates), generator=gen, dtype=torch.float64),   # [W, T, G]
              b[0], b[1], torch.rand(degree + 1, generator=gen, dtype=torch.float64),
              torch.randn(len(readout_gates), generator=gen, dtype=torch.float64)]
    weights = torch.randn(3 * n, windows, generator=gen, dtype=torch.float64)

    def run(where, dtype, readout):
        leaves = [t.to(where, dtype, copy=True).requires_grad_() for t in inputs]
        angles, b_re, b_im, coeffs, readout_angles = leaves
        psi = polynomial_state(angles.permute(2, 0, 1), b_re, b_im, coeffs, n, gates)
        norm2 = (psi * psi).sum((0, 1))
        features = pauli_expectations(readout(psi / torch.sqrt(norm2), readout_angles.unsqueeze(-1), n,
                                              readout_gates), n)
        ((features * weights.to(where, dtype)).sum() + norm2.sum()).backward()
        return _cpu64([psi, features] + [t.grad for t in leaves])

    reference = run("cpu", torch.float64, apply_circuit)
    clear_simulator_cache()
    for _ in range(GRAPH_WARMUP_CALLS + 2 if cuda else 1):
        ours = run(device, torch.float32, run_circuit)
        for name, mine, ref in zip(("psi", "features", "angles", "b_re", "b_im", "coeffs", "readout"), ours,
                                   reference):
            assert (mine - ref).norm() / ref.norm() < 1e-4, name
    states = {info[loop] for info in simulator_cache_info() for loop in ("forward", "adjoint")}
    assert states == ({"graph"} if cuda and graphs.USE_CUDA_GRAPHS else {"eager"})

"""Pure-PyTorch statevector simulator for Quixer's circuits (not lambeq's: see quixer_rna.lambeq_sim and
DEVELOPERS.md, "Two simulators"): circuit-14 layers of RY and CRX gates, the
LCU of per-token circuits, its powers applied to |0...0>, and Pauli expectations.

Layout. A batch of n-qubit states is one real tensor [2, 2**n, B]: plane 0 holds the real parts, plane 1
the imaginary parts (separate real planes: no complex autograd, so torch.compile and every backend can
take it). The amplitude index has wire 0 as its most significant bit (PennyLane's order) and the batch is
the LAST axis, so a gate's per-state cos/sin vector [B] broadcasts along contiguous memory and every
elementwise op is a long vectorised run. A gate on wire w only reshapes the state to
[.., 2**w, 2, 2**(n-w-1), B] and mixes the two halves; CRX touches only the control=1 half. No gate
matrices are built and nothing is permuted.

Memory. `lcu_powers` is a custom autograd function using the adjoint method: the forward stores only
each power's per-token circuit outputs (d * B * T * 2**n * 2 floats), and the backward runs every circuit
in reverse (gates are unitary, so the inverse gate recomputes the earlier state exactly) while pulling the
gradient back through the same inverse gates. Autograd never sees the ~4nL intermediate states per
circuit, so memory grows with B*T*2**n, not with the number of gates. `simulation_bytes_per_window` and
`simulation_total_bytes` give the budget (at 1024 windows x 32 tokens, n=6, L=4, d=3, float32: 48 MiB of
saved outputs, 173 MiB in all when simulated at once; at n=14, 12.8 GiB even one window at a time, 31 GiB
at once). The saved outputs are held for every window whatever the chunking: once chunked they dominate.

Chunks. Windows are simulated in chunks that share one workspace (ping-pong state buffers, adjoint
buffers, cos/sin rows): on CPU cache-sized (CPU_CHUNK_WINDOWS), on every device no more than a memory
budget allows (`chunk_windows`). Chunks are balanced and a short last chunk runs padded in the same
workspace, so one workspace per (device, dtype, circuit, chunk, tokens) is built, cached (LRU) and reused
by every later call; `clear_simulator_cache()` frees them.

CUDA graphs. On CUDA each workspace's two gate loops (forward, adjoint: ~4,000 small kernels per step at
n=6, L=4, d=3) are captured once into torch.cuda.CUDAGraph objects over the workspace's static buffers and
replayed, so the simulation costs a few dozen launches instead of thousands. `run_circuit` puts a single
circuit (the readout layer) on the same machinery (apply_circuit stays the plain-autograd reference), and
`pauli_expectations` treats all wires at once. The first GRAPH_WARMUP_CALLS calls of a loop run eagerly
on a side stream (the warm-up), the next one captures (this synchronises the device, once per workspace)
and replays. CPU (and meta) run the very same static-buffer plumbing eagerly. Switch
off with `use_cuda_graphs=False`, the module flag USE_CUDA_GRAPHS, or QUIXER_CUDA_GRAPHS=0 in the
environment; a capture that fails falls back to eager for that loop with one warning. No host sync happens
in the steady-state forward or backward (no .item(), no tensor-valued Python branches).
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import warnings
from collections import OrderedDict
from typing import Callable, Iterator, Sequence

import torch
from torch.autograd.function import once_differentiable

# ("ry", wire, -1) or ("crx", control, target)
QuixerGate = tuple[str, int, int]

# Windows per chunk in the CPU forward/backward (64 x T states): big enough to amortise the per-op
# overhead, small enough to stay near cache; 32..128 measured within a few percent of each other.
CPU_CHUNK_WINDOWS = 64

# Default memory budgets of lcu_powers (held tensors + one workspace), as fractions of the memory available
# the first time a device is asked (cached per device: `memory_budget_bytes`).
CUDA_MEMORY_FRACTION = 0.5
CPU_MEMORY_FRACTION = 0.25

USE_CUDA_GRAPHS = os.environ.get("QUIXER_CUDA_GRAPHS", "1").strip().lower() not in ("0", "false", "no", "off")
GRAPH_WARMUP_CALLS = 2       # eager calls of a gate loop (on a side stream) before it is captured
MAX_CACHED_WORKSPACES = 8    # LRU of workspaces (each with its buffers and, on CUDA, two graphs)

# Small per-window temporaries of the chunk loops, in units of 2**n elements (v, matvec results, stacked v;
# in backward the summed incoming gradient, its flattened halves, the carried gradient).
_TRANSIENT_STATE_VECTORS = 8

def circuit14_gates(qubits: int, layers: int) -> list[QuixerGate]:
    """QuixerGate order of circuit 14 (Sim et al. 2019), one angle per gate, in the order angles are consumed."""
    if qubits < 2:
        raise ValueError(f"circuit 14 needs at least 2 qubits, got {qubits}")
    if layers < 1:
        raise ValueError(f"circuit 14 needs at least 1 layer, got {layers}")
    n = qubits
    gates: list[QuixerGate] = []
    for _ in range(layers):
        gates += [("ry", w, -1) for w in range(n)]
        gates += [("crx", i, (i + 1) % n) for i in range(n - 1, -1, -1)]
        gates += [("ry", w, -1) for w in range(n)]
        gates += [("crx", i, (i - 1) % n) for i in [n - 1, *range(n - 1)]]
    return gates


def zero_planes(qubits: int, batch: int, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> torch.Tensor:
    """|0...0> for each of `batch` states, as [2, 2**qubits, batch]."""
    state = torch.zeros(2, 2**qubits, batch, dtype=dtype, device=device)
    state[0, 0].fill_(1.0)   # fill_ with a Python scalar: a kernel argument, no host tensor, no sync
    return state


# ----------------------------------------------------------------------------------------------------
# Views shared by the out-of-place (autograd) and in-place (adjoint) gate kernels.

def _wire_view(x: torch.Tensor, n: int, wire: int) -> torch.Tensor:
    """[K, 2**n, B] -> [K, 2**wire, 2, 2**(n-wire-1), B]: dim 2 is the wire's bit."""
    return x.view(x.shape[0], 2**wire, 2, 2 ** (n - wire - 1), x.shape[-1])


def _control_halves(x: torch.Tensor, n: int, control: int, target: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Split [2P, 2**n, B] (P re/im plane pairs) into its control=0 and control=1 views, each shaped
    [P, 2(re/im), ..., B] with the target bit at the returned dim."""
    lo, hi = sorted((control, target))
    view = x.view(x.shape[0] // 2, 2, 2**lo, 2, 2 ** (hi - lo - 1), 2, 2 ** (n - hi - 1), x.shape[-1])
    cdim, tdim = (3, 5) if control < target else (5, 3)
    return view.select(cdim, 0), view.select(cdim, 1), tdim if tdim < cdim else tdim - 1


_QUARTERS = ((0, 0), (0, 1), (1, 0), (1, 1))   # (re/im, target bit)


def _quarter(half: torch.Tensor, tdim: int, part: int, bit: int) -> torch.Tensor:
    """The re (part 0) or im (part 1) amplitudes of a control half with the target bit = `bit`."""
    return half.select(1, part).select(tdim - 1, bit)


# ----------------------------------------------------------------------------------------------------
# Out-of-place gates: differentiable by autograd; used for the small readout circuit and as reference.

def _ry(state: torch.Tensor, n: int, wire: int, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    v = _wire_view(state, n, wire)
    a0, a1 = v[:, :, 0], v[:, :, 1]
    return torch.stack((c * a0 - s * a1, s * a0 + c * a1), dim=2).reshape(state.shape)


def _crx(state: torch.Tensor, n: int, control: int, target: int, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    # RX = [[c, -is], [-is, c]]: new a0 = c a0 - i s a1, new a1 = c a1 - i s a0 on the control=1 half.
    off, on, td = _control_halves(state, n, control, target)
    r0, r1, m0, m1 = (_quarter(on, td, part, bit) for part, bit in _QUARTERS)
    re = torch.stack((c * r0 + s * m1, c * r1 + s * m0), dim=td - 1)
    im = torch.stack((c * m0 - s * r1, c * m1 - s * r0), dim=td - 1)
    cdim = 3 if control < target else 5
    return torch.stack((off, torch.stack((re, im), dim=1)), dim=cdim).reshape(state.shape)


def apply_circuit(state: torch.Tensor, angles: torch.Tensor, qubits: int, gates: Sequence[QuixerGate]) -> torch.Tensor:
    """Apply a circuit to [2, 2**n, B] states with per-state angles [len(gates), B] (or [len(gates), 1]
    shared); plain autograd, one intermediate state per gate, so keep it for small circuits."""
    cos, sin = torch.cos(angles / 2), torch.sin(angles / 2)
    for g, (kind, p, q) in enumerate(gates):
        if kind == "ry":
            state = _ry(state, qubits, p, cos[g], sin[g])
        else:
            state = _crx(state, qubits, p, q, cos[g], sin[g])
    return state


# ----------------------------------------------------------------------------------------------------
# In-place gates on preallocated buffers (no autograd): the adjoint function's kernels. A plan holds every
# view a gate touches, built once per pair of ping-pong buffers, so the gate loop issues only arithmetic
# (building views per gate call cost about a fifth of the run time).

def _gate_views(src: torch.Tensor, dst: torch.Tensor, n: int, gate: QuixerGate) -> tuple:
    """Views that gate src -> dst needs: RY (src, dst, s0, s1, d0, d1); CRX (s_off, d_off, s_on, d_on,
    the four (re/im, target bit) quarters of s_on, then of d_on)."""
    kind, p, q = gate
    if kind == "ry":
        sv, dv = _wire_view(src, n, p), _wire_view(dst, n, p)
        return (src, dst, sv[:, :, 0], sv[:, :, 1], dv[:, :, 0], dv[:, :, 1])
    s_off, s_on, td = _control_halves(src, n, p, q)
    d_off, d_on, _ = _control_halves(dst, n, p, q)
    return (s_off, d_off, s_on, d_on, *[_quarter(s_on, td, a, b) for a, b in _QUARTERS],
            *[_quarter(d_on, td, a, b) for a, b in _QUARTERS])


def _apply_gate(kind: str, views: tuple, c: torch.Tensor, s: torch.Tensor) -> None:
    """dst = gate(src) per state, cos/sin of the half angle c, s [B]; src is left intact."""
    if kind == "ry":  # RY = [[c, -s], [s, c]]
        src, dst, s0, s1, d0, d1 = views
        torch.mul(src, c, out=dst)
        d0.addcmul_(s1, s, value=-1)
        d1.addcmul_(s0, s)
    else:  # control=1 half: RX = [[c, -is], [-is, c]]; -i(r + im) = m - ir
        s_off, d_off, s_on, d_on, sr0, sr1, si0, si1, dr0, dr1, di0, di1 = views
        d_off.copy_(s_off)
        torch.mul(s_on, c, out=d_on)
        dr0.addcmul_(si1, s)
        dr1.addcmul_(si0, s)
        di0.addcmul_(sr1, s, value=-1)
        di1.addcmul_(sr0, s, value=-1)


def _forward_plan(x: torch.Tensor, y: torch.Tensor, n: int, gates: Sequence[QuixerGate]) -> list[tuple]:
    """QuixerGate g reads x (g even) or y (g odd); with an even gate count the result lands back in x."""
    return [_gate_views(*((x, y) if g % 2 == 0 else (y, x)), n, gate) for g, gate in enumerate(gates)]


def _run_forward(plan: list[tuple], gates: Sequence[QuixerGate], cos: Sequence[torch.Tensor],
                 sin: Sequence[torch.Tensor]) -> None:
    for (kind, _, _), views, c, s in zip(gates, plan, cos, sin):
        _apply_gate(kind, views, c, s)


def _grad_views(xg: torch.Tensor, scratch: torch.Tensor, n: int, gate: QuixerGate) -> tuple:
    """Views for one gate's angle gradient from xg = [v_re, v_im, g_re, g_im] just after the gate:
    (product buffer, then the factor pairs whose products it sums)."""
    kind, p, q = gate
    if kind == "ry":
        v = _wire_view(xg, n, p)
        pairs = ((v[2:, :, 1], v[:2, :, 0]), (v[2:, :, 0], v[:2, :, 1]))
    else:
        _, on, td = _control_halves(xg, n, p, q)
        v_on, g_on = on[0:1], on[1:2]
        pairs = tuple((_quarter(g_on, td, a, b), _quarter(v_on, td, 1 - a, 1 - b)) for a, b in _QUARTERS)
    shape = pairs[0][0].shape
    prod = scratch.view(-1)[: pairs[0][0].numel()].view(shape)
    return (prod, pairs)


def _angle_grad(kind: str, views: tuple, out: torch.Tensor) -> None:
    """Twice dL/dtheta of one gate into `out` [B]. The gate is exp(theta K) with K commuting with it, so
    dL/dtheta = <g, K v> (real dot) with v, g taken after the gate; the caller applies K's 1/2 once.
    RY: K = (1/2)[[0, -1], [1, 0]]; CRX: K = -iX/2 on the target in the control=1 half."""
    prod, pairs = views
    (g_a, v_a), (g_b, v_b) = pairs[0], pairs[1]
    torch.mul(g_a, v_a, out=prod)
    if kind == "ry":
        prod.addcmul_(g_b, v_b, value=-1)
    else:
        (g_c, v_c), (g_d, v_d) = pairs[2], pairs[3]
        prod.addcmul_(g_b, v_b)
        prod.addcmul_(g_c, v_c, value=-1)
        prod.addcmul_(g_d, v_d, value=-1)
    torch.sum(prod.view(-1, prod.shape[-1]), 0, out=out)


def _adjoint_plan(xg: torch.Tensor, y: torch.Tensor, scratch: torch.Tensor, n: int,
                  gates: Sequence[QuixerGate]) -> list[tuple]:
    """Backward walk over reversed gates, step j reading xg (j even) or y (j odd): per step the angle
    gradient views and the inverse-gate views. With an even gate count it ends back in xg."""
    plan = []
    for j, gate in enumerate(reversed(gates)):
        src, dst = (xg, y) if j % 2 == 0 else (y, xg)
        plan.append((_grad_views(src, scratch, n, gate), _gate_views(src, dst, n, gate)))
    return plan


def _run_adjoint(plan: list[tuple], gates: Sequence[QuixerGate], cos: Sequence[torch.Tensor],
                 neg_sin: Sequence[torch.Tensor], grad_rows: Sequence[torch.Tensor]) -> None:
    """Walk the circuit backwards on [v, g] at its output: write each gate's doubled angle gradient into
    its row of grad_rows, then undo the gate on v and pull g back through it (the inverse, and the
    transpose, of a rotation is the rotation with -sin)."""
    for j, (grad_views, gate_views) in enumerate(plan):
        g = len(gates) - 1 - j
        kind = gates[g][0]
        _angle_grad(kind, grad_views, grad_rows[g])
        _apply_gate(kind, gate_views, cos[g], neg_sin[g])


# ----------------------------------------------------------------------------------------------------
# Memory: what lcu_powers holds per window, the budget, and the chunk size it implies.

def _dtype_bytes(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype, device="meta").element_size()


def simulation_bytes_per_window(qubits: int, tokens: int, degree: int, dtype: torch.dtype = torch.float32, *,
                                num_gates: int | None = None, part: str = "all") -> int:
    """Bytes that `lcu_powers` (forward + backward, training) needs per window, D = 2**qubits,
    G = num_gates (default circuit 14 with 4 layers: 16 * qubits), T = tokens, d = degree:

    part="held": kept for EVERY window from forward to the end of backward, whatever the chunk size:
        per-power circuit outputs saved for backward  2*d*D*T   (the dominant term once chunked)
        the result [d, 2, D, W] and its incoming grad 2 * 2*d*D
        the angle gradient [G, W, T]                  G*T
    part="chunk": the workspace, per window of a chunk (one workspace serves every chunk):
        ping-pong buffers, 4 planes each (v and g)    2 * 4*D*T   (the forward uses planes 0-1 of both)
        angle-gradient scratch                        D*T
        cos, sin (or -sin) and grad rows              3*G*T
        small per-chunk temporaries                   8*D
    part="all": held + chunk, i.e. per window when all windows are simulated at once.

    Times the dtype's size. Not counted: the angles themselves (G*T per window; the forward keeps a
    reference for backward) and b (2*T). Inference (no grad) needs no saved outputs: one chunk of them."""
    if part not in ("held", "chunk", "all"):
        raise ValueError(f"part must be 'held', 'chunk' or 'all', got {part!r}")
    dim, gates = 2**qubits, 16 * qubits if num_gates is None else num_gates
    held = 2 * degree * dim * tokens + 4 * degree * dim + gates * tokens
    chunk = 9 * dim * tokens + 3 * gates * tokens + _TRANSIENT_STATE_VECTORS * dim
    elements = {"held": held, "chunk": chunk, "all": held + chunk}[part]
    return elements * _dtype_bytes(dtype)


def simulation_total_bytes(windows: int, qubits: int, tokens: int, degree: int,
                           dtype: torch.dtype = torch.float32, *, num_gates: int | None = None,
                           chunk: int | None = None) -> int:
    """Peak bytes of one `lcu_powers` forward + backward over `windows` windows simulated `chunk` at a time
    (default all at once): windows * held + chunk * workspace (see simulation_bytes_per_window). With
    chunk=1 it is the least any run needs: refuse a configuration when even that does not fit."""
    chunk = windows if chunk is None else max(1, min(chunk, windows))
    held = simulation_bytes_per_window(qubits, tokens, degree, dtype, num_gates=num_gates, part="held")
    work = simulation_bytes_per_window(qubits, tokens, degree, dtype, num_gates=num_gates, part="chunk")
    return windows * held + (chunk * work if windows > 0 else 0)


_BUDGETS: dict[torch.device, float] = {}


def _host_available_bytes() -> int:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def memory_budget_bytes(device: torch.device | str) -> float:
    """Default budget of lcu_powers on `device`: CUDA_MEMORY_FRACTION of the CUDA memory available (free
    plus what PyTorch's allocator has cached but not handed out) or CPU_MEMORY_FRACTION of the host's
    MemAvailable, read ONCE per device and process and cached, so the chunk size, and with it the
    captured CUDA graphs, stays the same from step to step (clear_simulator_cache() forgets it). cudaMemGetInfo
    is not a stream synchronisation. Meta tensors hold no memory: unlimited."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if device not in _BUDGETS:
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
            _BUDGETS[device] = CUDA_MEMORY_FRACTION * (free + max(0, cached))
        elif device.type == "meta":
            _BUDGETS[device] = math.inf
        else:
            _BUDGETS[device] = CPU_MEMORY_FRACTION * _host_available_bytes()
    return _BUDGETS[device]


def _balanced(windows: int, most: int) -> int:
    """Largest chunk <= most that splits `windows` into equal chunks but for a shorter last one, with as few
    chunks as `most` allows and the smallest padding of the last chunk."""
    most = max(1, min(most, windows))
    count = -(-windows // most)
    return -(-windows // count)


def chunk_windows(windows: int, qubits: int, tokens: int, degree: int, dtype: torch.dtype = torch.float32,
                  device: torch.device | str = "cpu", budget_bytes: float | None = None, *,
                  num_gates: int | None = None) -> int:
    """Windows per chunk for lcu_powers: as many as fit `budget_bytes` (default memory_budget_bytes(device))
    after the held part of every window (simulation_bytes_per_window), on CPU also at most
    CPU_CHUNK_WINDOWS (cache-sized), balanced so the chunks are equal but for the last. At least 1, even
    when the held part alone exceeds the budget (simulation_total_bytes with chunk=1 is the floor)."""
    return _fit_chunk(windows, qubits, tokens, degree, dtype, device, budget_bytes, num_gates, CPU_CHUNK_WINDOWS)


def _fit_chunk(windows: int, qubits: int, tokens: int, degree: int, dtype: torch.dtype,
               device: torch.device | str, budget_bytes: float | None, num_gates: int | None, cpu_cap: int) -> int:
    if windows <= 0:
        return 1
    device = torch.device(device)
    budget = memory_budget_bytes(device) if budget_bytes is None else budget_bytes
    held = simulation_bytes_per_window(qubits, tokens, degree, dtype, num_gates=num_gates, part="held")
    work = simulation_bytes_per_window(qubits, tokens, degree, dtype, num_gates=num_gates, part="chunk")
    room = budget - windows * held
    fit = windows if math.isinf(room) else max(1, int(room // work)) if room > 0 else 1
    if device.type != "cuda":
        fit = min(fit, cpu_cap)
    return _balanced(windows, fit)


# ----------------------------------------------------------------------------------------------------
# Static-buffer gate loops: eager on CPU/meta, captured once into a CUDA graph and replayed on CUDA. The
# four hooks below are the only code that touches the CUDA graph API (tests replace them to drive the
# state machine on CPU).

def _graphs_possible(device: torch.device) -> bool:
    return device.type == "cuda"


def _stream_capturing(device: torch.device) -> bool:
    """True while the caller is itself capturing a CUDA graph: then our loops just run (are recorded)."""
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def _warm_up(fn: Callable[[], None], device: torch.device) -> None:
    """Run `fn` on a side stream, ordered after and before the current stream's work (the warm-up that
    CUDA graph capture asks for: lazy initialisations happen outside the capture)."""
    current = torch.cuda.current_stream(device)
    side = torch.cuda.Stream(device=device)
    side.wait_stream(current)
    with torch.cuda.stream(side):
        fn()
    current.wait_stream(side)


def _capture(fn: Callable[[], None], device: torch.device) -> Callable[[], None]:
    """Capture `fn` (which must allocate nothing that outlives it) into a CUDA graph with its own private
    memory pool, on a fresh capture stream of `device`; return the replay. Capturing does not run `fn`.
    capture_error_mode='thread_local': other threads (a DataLoader's pin-memory thread) may keep using
    CUDA meanwhile."""
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream(device=device)
    with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
        fn()
    return graph.replay   # the bound method keeps the graph (and its pool) alive


class _StaticLoop:
    """One gate loop over a workspace's static buffers. Calling it runs the loop once: eagerly, or on CUDA
    (graphs=True) GRAPH_WARMUP_CALLS eager warm-ups, then one capture, then replays. Inputs are whatever
    the static buffers hold at the call; capture never runs the loop, so the captured call replays."""

    def __init__(self, fn: Callable[[], None], device: torch.device) -> None:
        self.fn, self.device = fn, device
        self.warm_calls = 0
        self.replay: Callable[[], None] | None = None
        self.failed = False
        self.captures = 0

    @property
    def state(self) -> str:
        return "failed" if self.failed else "graph" if self.replay else "warming" if self.warm_calls else "eager"

    def __call__(self, graphs: bool) -> None:
        if not graphs or self.failed or not _graphs_possible(self.device):
            self.fn()
        elif self.replay is not None:
            self.replay()
        elif _stream_capturing(self.device):
            self.fn()
        elif self.warm_calls < GRAPH_WARMUP_CALLS:
            self.warm_calls += 1
            _warm_up(self.fn, self.device)
        else:
            try:
                replay = _capture(self.fn, self.device)
            except Exception as exc:  # noqa: BLE001 - any capture failure: this loop stays eager
                self.failed = True
                warnings.warn(f"quixer_sim: CUDA graph capture failed, running this gate loop eagerly: {exc!r}",
                              RuntimeWarning, stacklevel=2)
                self.fn()
                return
            self.captures += 1
            self.replay = replay
            replay()


class _Workspace:
    """Buffers, prebuilt views and the two gate loops for chunks of `chunk` windows x `tokens` tokens.
    xg, y: [4, D, chunk*T] ping-pong buffers ([v_re, v_im, g_re, g_im] in the adjoint; the forward uses
    planes 0-1 of each); scratch [D*chunk*T]; cos, sin (-sin in backward), rows (angle gradients, also the
    half-angle scratch): [G, chunk*T]. Windows beyond a short last chunk keep stale but valid values."""

    def __init__(self, like: torch.Tensor, qubits: int, gates: tuple[QuixerGate, ...], chunk: int,
                 tokens: int) -> None:
        dim, bsz, num_gates = 2**qubits, chunk * tokens, len(gates)
        self.device, self.chunk, self.tokens = like.device, chunk, tokens
        with torch.inference_mode(False):   # normal tensors: usable in and out of inference mode
            options = {"dtype": like.dtype, "device": like.device}
            self.xg, self.y = torch.zeros(4, dim, bsz, **options), torch.zeros(4, dim, bsz, **options)
            self.scratch = torch.zeros(dim * bsz, **options)
            self.cos, self.sin = torch.ones(num_gates, bsz, **options), torch.zeros(num_gates, bsz, **options)
            self.rows = torch.zeros(num_gates, bsz, **options)
            forward_plan = _forward_plan(self.xg[:2], self.y[:2], qubits, gates)
            adjoint_plan = _adjoint_plan(self.xg, self.y, self.scratch, qubits, gates)
            cos, sin, rows = self.cos.unbind(0), self.sin.unbind(0), self.rows.unbind(0)
            # per-window views [.., chunk, T]: a chunk of nw windows is [..., :nw, :]
            self.x4 = self.xg[:2].view(2, dim, chunk, tokens)
            self.xg4 = self.xg.view(4, dim, chunk, tokens)
            self.cos3, self.sin3 = self.cos.view(num_gates, chunk, tokens), self.sin.view(num_gates, chunk, tokens)
            self.rows3 = self.rows.view(num_gates, chunk, tokens)
        self.forward = _StaticLoop(lambda: _run_forward(forward_plan, gates, cos, sin), like.device)
        self.adjoint = _StaticLoop(lambda: _run_adjoint(adjoint_plan, gates, cos, sin, rows), like.device)
        self.nbytes = sum(t.numel() * t.element_size() for t in (self.xg, self.y, self.scratch, self.cos,
                                                                  self.sin, self.rows))
        self.lock = threading.Lock()

    def load_angles(self, angles: torch.Tensor, negate_sin: bool) -> None:
        """cos and sin (or -sin) of half the angles [G, nw, T] of a chunk into the static rows."""
        nw = angles.shape[1]
        half = self.rows3[:, :nw]
        torch.mul(angles, 0.5, out=half)
        torch.cos(half, out=self.cos3[:, :nw])
        torch.sin(half, out=self.sin3[:, :nw])
        if negate_sin:
            self.sin3[:, :nw].neg_()


_WORKSPACES: "OrderedDict[tuple, _Workspace]" = OrderedDict()
_WORKSPACES_LOCK = threading.Lock()


def clear_simulator_cache() -> None:
    """Drop every cached workspace (buffers and CUDA graphs) and the cached default memory budgets."""
    with _WORKSPACES_LOCK:
        _WORKSPACES.clear()
    _BUDGETS.clear()
    _PAULI_TABLES.clear()


def simulator_cache_info() -> list[dict]:
    """One dict per cached workspace: device, dtype, qubits, chunk, tokens, bytes, and the state of its
    forward and adjoint loops ('eager', 'warming', 'graph', 'failed')."""
    with _WORKSPACES_LOCK:
        items = list(_WORKSPACES.items())
    return [{"device": str(key[0]), "dtype": str(key[1]).replace("torch.", ""), "qubits": key[2],
             "chunk": key[4], "tokens": key[5], "bytes": ws.nbytes, "forward": ws.forward.state,
             "adjoint": ws.adjoint.state, "captures": ws.forward.captures + ws.adjoint.captures}
            for key, ws in items]


def _stream_key(device: torch.device) -> int | None:
    return torch.cuda.current_stream(device).stream_id if device.type == "cuda" else None


@contextlib.contextmanager
def _borrow_workspace(like: torch.Tensor, qubits: int, gates: tuple[QuixerGate, ...], chunk: int,
                      tokens: int) -> Iterator[_Workspace]:
    """The cached workspace for this shape on this stream (built on a miss; least recently used ones are
    evicted beyond MAX_CACHED_WORKSPACES or the device's budget), held exclusively while in use; if another
    thread holds it, a private uncached one."""
    key = (like.device, like.dtype, qubits, gates, chunk, tokens, _stream_key(like.device))
    with _WORKSPACES_LOCK:
        workspace = _WORKSPACES.get(key)
        if workspace is not None:
            _WORKSPACES.move_to_end(key)
    if workspace is None:
        incoming = chunk * simulation_bytes_per_window(qubits, tokens, 0, like.dtype, num_gates=len(gates),
                                                       part="chunk")
        with _WORKSPACES_LOCK:   # drop LRU workspaces first, so their memory can be reused
            _evict(like.device, incoming)
        try:
            workspace = _Workspace(like, qubits, gates, chunk, tokens)
        except torch.OutOfMemoryError:   # cached workspaces of other shapes may be what is in the way
            with _WORKSPACES_LOCK:
                for other in [k for k in _WORKSPACES if k[0] == like.device]:
                    del _WORKSPACES[other]
            workspace = _Workspace(like, qubits, gates, chunk, tokens)
        with _WORKSPACES_LOCK:
            workspace = _WORKSPACES.setdefault(key, workspace)
    private = not workspace.lock.acquire(blocking=False)
    if private:
        workspace = _Workspace(like, qubits, gates, chunk, tokens)
    try:
        yield workspace
    finally:
        if not private:
            workspace.lock.release()


def _evict(device: torch.device, incoming: int) -> None:
    """Under _WORKSPACES_LOCK: make room for a new workspace of `incoming` bytes on `device`: least recently
    used first, down to MAX_CACHED_WORKSPACES - 1 in all and to the device's budget on that device."""
    while len(_WORKSPACES) >= MAX_CACHED_WORKSPACES:
        _WORKSPACES.popitem(last=False)
    budget = memory_budget_bytes(device)
    mine = [key for key in _WORKSPACES if key[0] == device]
    cached = sum(_WORKSPACES[key].nbytes for key in mine)
    for key in mine:
        if cached + incoming <= budget:
            break
        cached -= _WORKSPACES.pop(key).nbytes


@contextlib.contextmanager
def _device_context(device: torch.device) -> Iterator[None]:
    """Make `device` current on CUDA (streams, captures and replays then belong to it) and switch autocast
    off: the simulator runs in its inputs' dtype (autocast would move its matrix-vector products to
    half precision)."""
    if device.type in ("cuda", "cpu"):
        with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext(), \
                torch.autocast(device.type, enabled=False):
            yield
    else:
        yield


class _LcuPowers(torch.autograd.Function):
    """angles [G, W, T], b_re/b_im [T] -> [d, 2, 2**n, W]: M^k |0> for k = 1..d, M = sum_t b_t U_t."""

    @staticmethod
    def forward(ctx, angles: torch.Tensor, b_re: torch.Tensor, b_im: torch.Tensor, qubits: int,
                gates: tuple[QuixerGate, ...], degree: int, chunk: int, graphs: bool, keep: bool) -> torch.Tensor:
        n, dim = qubits, 2**qubits
        num_gates, windows, tokens = angles.shape
        out = angles.new_empty(degree, 2, dim, windows)
        saved: list[torch.Tensor] = []
        with _device_context(angles.device), contextlib.ExitStack() as stack:
            workspace = None
            for w0 in range(0, windows, chunk):
                if workspace is None:
                    workspace = stack.enter_context(_borrow_workspace(angles, n, gates, chunk, tokens))
                nw = min(windows, w0 + chunk) - w0
                workspace.load_angles(angles[:, w0:w0 + nw], negate_sin=False)
                outputs = angles.new_empty(degree if keep else 1, 2, dim, nw, tokens)
                v = zero_planes(n, nw, angles.dtype, angles.device)
                for k in range(degree):
                    workspace.x4[:, :, :nw].copy_(v.unsqueeze(-1))
                    workspace.forward(graphs)
                    per_power = outputs[k if keep else 0]
                    per_power.copy_(workspace.x4[:, :, :nw])
                    per_token = per_power.view(2, dim * nw, tokens)
                    v_re = torch.addmv(torch.mv(per_token[0], b_re), per_token[1], b_im, alpha=-1)
                    v_im = torch.addmv(torch.mv(per_token[0], b_im), per_token[1], b_re)
                    v = torch.stack((v_re, v_im)).view(2, dim, nw)
                    out[k, :, :, w0:w0 + nw] = v
                if keep:
                    saved.append(outputs)
        ctx.save_for_backward(angles, b_re, b_im, *saved)
        ctx.meta = (n, gates, degree, chunk, graphs)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        angles, b_re, b_im, *saved = ctx.saved_tensors
        n, gates, degree, chunk, graphs = ctx.meta
        dim = 2**n
        num_gates, windows, tokens = angles.shape
        grad_angles = angles.new_empty(num_gates, windows, tokens)
        grad_b = b_re.new_zeros(2, tokens)
        with _device_context(angles.device), contextlib.ExitStack() as stack:
            workspace = None
            for index, w0 in enumerate(range(0, windows, chunk)):
                if workspace is None:
                    workspace = stack.enter_context(_borrow_workspace(angles, n, gates, chunk, tokens))
                nw = min(windows, w0 + chunk) - w0
                workspace.load_angles(angles[:, w0:w0 + nw], negate_sin=True)
                outputs, xg4, grad_chunk = saved[index], workspace.xg4, grad_angles[:, w0:w0 + nw]
                carried = None
                for k in range(degree - 1, -1, -1):
                    grad_v = grad_out[k, :, :, w0:w0 + nw]
                    if carried is not None:
                        grad_v = grad_v + carried
                    gr, gi = grad_v[0], grad_v[1]                                   # [D, nw]
                    # v = sum_t b_t w_t: dL/db_t = sum conj(w_t) G in re/im parts; dL/dw_t = conj(b_t) G.
                    w = outputs[k].view(2, dim * nw, tokens)
                    gr_flat, gi_flat = gr.reshape(-1), gi.reshape(-1)
                    grad_b[0].addmv_(w[0].t(), gr_flat).addmv_(w[1].t(), gi_flat)
                    grad_b[1].addmv_(w[0].t(), gi_flat).addmv_(w[1].t(), gr_flat, alpha=-1)
                    xg4[:2, :, :nw].copy_(outputs[k])
                    g_re, g_im = xg4[2, :, :nw], xg4[3, :, :nw]
                    torch.mul(gr.unsqueeze(-1), b_re, out=g_re).addcmul_(gi.unsqueeze(-1), b_im)
                    torch.mul(gi.unsqueeze(-1), b_re, out=g_im).addcmul_(gr.unsqueeze(-1), b_im, value=-1)
                    workspace.adjoint(graphs)
                    if k == degree - 1:
                        grad_chunk.copy_(workspace.rows3[:, :nw])
                    else:
                        grad_chunk.add_(workspace.rows3[:, :nw])
                    if k > 0:
                        carried = xg4[2:, :, :nw].sum(-1)
                grad_chunk.mul_(0.5)
        return grad_angles, grad_b[0], grad_b[1], None, None, None, None, None, None


@torch.compiler.disable  # eager by design: inductor's CPU code for these loops compiled for minutes and ran slower
def lcu_powers(angles: torch.Tensor, b_re: torch.Tensor, b_im: torch.Tensor, qubits: int,
               gates: Sequence[QuixerGate], degree: int, chunk: int | None = None, *,
               budget_bytes: float | None = None, use_cuda_graphs: bool | None = None) -> torch.Tensor:
    """M^k |0...0> for k = 1..degree, where M = sum_t b_t U(angles[:, w, t]) for each window w.

    angles: [len(gates), W, T] (gate-major; any strides, e.g. a permuted [W, T, G] tensor); b_re, b_im: [T].
    Returns [degree, 2, 2**qubits, W]. Gradients by the adjoint method (see the module docstring).
    `chunk` windows are simulated at a time (default chunk_windows(...) with `budget_bytes`: cache-sized on
    CPU, as many as the memory budget allows on CUDA). `use_cuda_graphs` (default USE_CUDA_GRAPHS) captures
    the gate loops into CUDA graphs on CUDA; elsewhere it changes nothing."""
    if angles.dim() != 3 or angles.shape[0] != len(gates):
        raise ValueError(f"angles must be [{len(gates)}, W, T], got {tuple(angles.shape)}")
    if len(gates) % 2:
        raise ValueError("the ping-pong buffers need an even number of gates (circuit 14 has 4n per layer)")
    windows, tokens = angles.shape[1], angles.shape[2]
    if chunk is None:
        chunk = chunk_windows(windows, qubits, tokens, degree, angles.dtype, angles.device, budget_bytes,
                              num_gates=len(gates))
    chunk = max(1, min(int(chunk), windows))
    graphs = USE_CUDA_GRAPHS if use_cuda_graphs is None else bool(use_cuda_graphs)
    # the per-power outputs are saved only when a backward can follow (not in evaluation)
    keep = torch.is_grad_enabled() and (angles.requires_grad or b_re.requires_grad or b_im.requires_grad)
    b_re, b_im = b_re.to(angles.dtype).contiguous(), b_im.to(angles.dtype).contiguous()
    return _LcuPowers.apply(angles, b_re, b_im, qubits, tuple(gates), degree, chunk, graphs, keep)


def polynomial_state(angles: torch.Tensor, b_re: torch.Tensor, b_im: torch.Tensor, coeffs: torch.Tensor,
                     qubits: int, gates: Sequence[QuixerGate], chunk: int | None = None, *,
                     budget_bytes: float | None = None, use_cuda_graphs: bool | None = None) -> torch.Tensor:
    """psi = (sum_k c_k M^k |0...0>) / ||c||_1 for each window: [2, 2**qubits, W], not normalised (its
    squared norm is the post-selection probability). coeffs [d+1], c[0] the constant term."""
    windows = angles.shape[1]
    powers = lcu_powers(angles, b_re, b_im, qubits, gates, coeffs.shape[0] - 1, chunk,
                        budget_bytes=budget_bytes, use_cuda_graphs=use_cuda_graphs)
    psi = coeffs[0] * zero_planes(qubits, windows, angles.dtype, angles.device)
    psi = psi + torch.einsum("k,krnw->rnw", coeffs[1:], powers)
    return psi / coeffs.abs().sum()


class _Circuit(torch.autograd.Function):
    """state [2, D, B], angles [G, B] or [G, 1] -> the circuit applied to each state, by the workspace gate
    loops (CUDA graphs on CUDA); backward by the adjoint walk, which also returns the state's gradient."""

    @staticmethod
    def forward(ctx, state: torch.Tensor, angles: torch.Tensor, qubits: int, gates: tuple[QuixerGate, ...],
                chunk: int, graphs: bool) -> torch.Tensor:
        batch = state.shape[-1]
        per_state = angles.expand(len(gates), batch)
        out = state.new_empty(state.shape)
        with _device_context(state.device), contextlib.ExitStack() as stack:
            workspace = None
            for w0 in range(0, batch, chunk):
                if workspace is None:
                    workspace = stack.enter_context(_borrow_workspace(state, qubits, gates, chunk, 1))
                nw = min(batch, w0 + chunk) - w0
                workspace.load_angles(per_state[:, w0:w0 + nw].unsqueeze(-1), negate_sin=False)
                workspace.x4[:, :, :nw, 0].copy_(state[:, :, w0:w0 + nw])
                workspace.forward(graphs)
                out[:, :, w0:w0 + nw] = workspace.x4[:, :, :nw, 0]
        ctx.save_for_backward(angles, out)
        ctx.meta = (qubits, gates, chunk, graphs)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        angles, out = ctx.saved_tensors
        qubits, gates, chunk, graphs = ctx.meta
        batch = out.shape[-1]
        per_state = angles.expand(len(gates), batch)
        grad_state = out.new_empty(out.shape)
        grad_rows = out.new_empty(len(gates), batch)
        with _device_context(out.device), contextlib.ExitStack() as stack:
            workspace = None
            for w0 in range(0, batch, chunk):
                if workspace is None:
                    workspace = stack.enter_context(_borrow_workspace(out, qubits, gates, chunk, 1))
                nw = min(batch, w0 + chunk) - w0
                workspace.load_angles(per_state[:, w0:w0 + nw].unsqueeze(-1), negate_sin=True)
                workspace.xg4[:2, :, :nw, 0].copy_(out[:, :, w0:w0 + nw])
                workspace.xg4[2:, :, :nw, 0].copy_(grad_out[:, :, w0:w0 + nw])
                workspace.adjoint(graphs)
                grad_state[:, :, w0:w0 + nw] = workspace.xg4[2:, :, :nw, 0]
                grad_rows[:, w0:w0 + nw] = workspace.rows3[:, :nw, 0]
        grad_angles = grad_rows.mul_(0.5)
        if angles.shape[-1] != batch:          # shared angles [G, 1]: sum over the states
            grad_angles = grad_angles.sum(-1, keepdim=True)
        return grad_state, grad_angles, None, None, None, None


@torch.compiler.disable  # the workspace cache and CUDA graphs are eager machinery, like lcu_powers'
def run_circuit(state: torch.Tensor, angles: torch.Tensor, qubits: int, gates: Sequence[QuixerGate], *,
                chunk: int | None = None, budget_bytes: float | None = None,
                use_cuda_graphs: bool | None = None) -> torch.Tensor:
    """apply_circuit's result and gradients (state [2, 2**n, B], angles [len(gates), B] or [len(gates), 1]
    shared) by the adjoint method on a cached workspace: two gate loops, captured as CUDA graphs on CUDA,
    instead of apply_circuit's ~10 autograd kernels per gate forward and ~25 backward. Use it for the
    readout circuit of a training step; an odd number of gates falls back to apply_circuit."""
    if angles.dim() != 2 or angles.shape[0] != len(gates) or angles.shape[1] not in (1, state.shape[-1]):
        raise ValueError(f"angles must be [{len(gates)}, {state.shape[-1]} or 1], got {tuple(angles.shape)}")
    if len(gates) % 2:
        return apply_circuit(state, angles, qubits, gates)
    batch = state.shape[-1]
    if chunk is None:   # on CPU as many states per chunk as lcu_powers has at 32 tokens
        chunk = _fit_chunk(batch, qubits, 1, 1, state.dtype, state.device, budget_bytes, len(gates),
                           CPU_CHUNK_WINDOWS * 32)
    chunk = max(1, min(int(chunk), batch))
    graphs = USE_CUDA_GRAPHS if use_cuda_graphs is None else bool(use_cuda_graphs)
    return _Circuit.apply(state, angles, qubits, tuple(gates), chunk, graphs)


class _FlipBits(torch.autograd.Function):
    """[2, D, B] -> [2, n, D, B]: for each wire i the state with amplitude k moved to k XOR (wire i's bit), one
    gather; backward gathers back and sums over the wires (each flip is its own inverse). Deterministic,
    unlike index_put/index_add backward."""

    @staticmethod
    def forward(ctx, state: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(flipped)
        wires, dim = flipped.shape
        return state.index_select(1, flipped.reshape(-1)).view(2, wires, dim, state.shape[-1])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        (flipped,) = ctx.saved_tensors
        wires, dim = flipped.shape
        # grad_state[:, j] = sum_i grad[:, i, flipped[i, j]]: the flat position of (i, flipped[i, j])
        offsets = flipped + dim * torch.arange(wires, device=flipped.device).unsqueeze(1)
        gathered = grad.reshape(2, wires * dim, grad.shape[-1]).index_select(1, offsets.reshape(-1))
        return gathered.view(2, wires, dim, grad.shape[-1]).sum(1), None


_PAULI_TABLES: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _pauli_tables(qubits: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """flipped [n, D]: amplitude index with wire i's bit flipped; sign [n, D]: +1 where that bit is 0, -1
    where it is 1. Built on the device by arithmetic (no host tensor, no copy) and cached."""
    key = (qubits, dtype, device)
    if key not in _PAULI_TABLES:
        with torch.inference_mode(False), torch.no_grad():
            index = torch.arange(2**qubits, device=device)
            bit = torch.pow(2, qubits - 1 - torch.arange(qubits, device=device)).unsqueeze(1)   # wire 0 = MSB
            flipped = torch.bitwise_xor(index, bit)
            sign = 1 - 2 * (torch.bitwise_and(index, bit) > 0).to(dtype)
        _PAULI_TABLES[key] = (flipped, sign)
    return _PAULI_TABLES[key]


def pauli_expectations(state: torch.Tensor, qubits: int) -> torch.Tensor:
    """<X_i>, <Y_i>, <Z_i> of normalised [2, 2**n, B] states -> [3n, B] ordered X_0..X_{n-1}, Y_.., Z_...
    All wires at once (a few dozen kernels forward and backward, whatever n): with f_i the state with wire
    i's bit flipped and s_i = +-1 that bit's sign, X_i = sum Re(conj(psi) f_i), Y_i = sum s_i Im(conj(psi) f_i),
    Z_i = sum s_i |psi|^2."""
    flipped, sign = _pauli_tables(qubits, state.dtype, state.device)
    moved = _FlipBits.apply(state, flipped)                     # [2, n, D, B]
    re, im, f_re, f_im = state[0], state[1], moved[0], moved[1]
    xs = (re * f_re + im * f_im).sum(1)
    ys = (sign.unsqueeze(-1) * (re * f_im - im * f_re)).sum(1)
    zs = (sign.unsqueeze(-1) * (re * re + im * im)).sum(1)   # not a matmul: TF32 must not touch it
    return torch.cat((xs, ys, zs))

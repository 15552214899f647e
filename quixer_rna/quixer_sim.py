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
circuit, so memory grows with B*T*2**n, not with the number of gates: at 1024 windows x 32 tokens,
n=6, d=3 that is 48 MiB, and a whole fwd+bwd step of the paper-sized model peaks near 0.75 GiB of RAM
(benchmarks/bench_quixer.py). On CPU the windows are simulated in chunks (CPU_CHUNK_WINDOWS) that reuse
one set of buffers; on GPU all at once.
"""

from __future__ import annotations

from typing import Sequence

import torch

# ("ry", wire, -1) or ("crx", control, target)
QuixerGate = tuple[str, int, int]

# Windows per chunk in the CPU forward/backward (64 x T states): big enough to amortise the per-op
# overhead, small enough to stay near cache; 32..128 measured within a few percent of each other.
CPU_CHUNK_WINDOWS = 64


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
    state[0, 0] = 1.0
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


class _LcuPowers(torch.autograd.Function):
    """angles [G, W, T], b_re/b_im [T] -> [d, 2, 2**n, W]: M^k |0> for k = 1..d, M = sum_t b_t U_t."""

    @staticmethod
    def forward(ctx, angles: torch.Tensor, b_re: torch.Tensor, b_im: torch.Tensor, qubits: int,
                gates: tuple[QuixerGate, ...], degree: int, chunk: int) -> torch.Tensor:
        n, dim = qubits, 2**qubits
        num_gates, windows, tokens = angles.shape
        cos, sin = torch.cos(angles / 2), torch.sin(angles / 2)   # once, reused for every power
        out = angles.new_empty(degree, 2, dim, windows)
        saved: list[torch.Tensor] = []
        plan_for: dict[int, tuple] = {}   # buffers and views per chunk size (the last chunk may be short)
        for w0 in range(0, windows, chunk):
            nw = min(windows, w0 + chunk) - w0
            bsz = nw * tokens
            if bsz not in plan_for:
                x, y = angles.new_empty(2, dim, bsz), angles.new_empty(2, dim, bsz)
                plan_for[bsz] = (x, _forward_plan(x, y, n, gates))
            x, plan = plan_for[bsz]
            c = cos[:, w0:w0 + nw].reshape(num_gates, bsz).unbind(0)
            s = sin[:, w0:w0 + nw].reshape(num_gates, bsz).unbind(0)
            outputs = angles.new_empty(degree, 2, dim, bsz)
            v = zero_planes(n, nw, angles.dtype, angles.device)
            for k in range(degree):
                x.view(2, dim, nw, tokens).copy_(v.unsqueeze(-1))
                _run_forward(plan, gates, c, s)
                outputs[k] = x
                per_token = x.view(2, dim * nw, tokens)
                v = torch.stack((per_token[0] @ b_re - per_token[1] @ b_im,
                                 per_token[0] @ b_im + per_token[1] @ b_re)).view(2, dim, nw)
                out[k, :, :, w0:w0 + nw] = v
            saved.append(outputs)
        ctx.save_for_backward(cos, sin, b_re, b_im)
        ctx.chunk_outputs = saved
        ctx.meta = (n, gates, degree, chunk)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        cos, sin, b_re, b_im = ctx.saved_tensors
        n, gates, degree, chunk = ctx.meta
        dim = 2**n
        num_gates, windows, tokens = cos.shape
        grad_angles = torch.empty_like(cos)
        grad_b = b_re.new_zeros(2, tokens)
        neg_sin = -sin
        plan_for: dict[int, tuple] = {}
        for index, w0 in enumerate(range(0, windows, chunk)):
            nw = min(windows, w0 + chunk) - w0
            bsz = nw * tokens
            if bsz not in plan_for:
                xg, y = cos.new_empty(4, dim, bsz), cos.new_empty(4, dim, bsz)
                scratch = cos.new_empty(2, dim // 2, bsz)
                plan_for[bsz] = (xg, _adjoint_plan(xg, y, scratch, n, gates))
            xg, plan = plan_for[bsz]
            c = cos[:, w0:w0 + nw].reshape(num_gates, bsz).unbind(0)
            ns = neg_sin[:, w0:w0 + nw].reshape(num_gates, bsz).unbind(0)
            ga = cos.new_empty(degree, num_gates, bsz)
            outputs = ctx.chunk_outputs[index]
            carried = None
            for k in range(degree - 1, -1, -1):
                grad_v = grad_out[k, :, :, w0:w0 + nw]
                if carried is not None:
                    grad_v = grad_v + carried
                w = outputs[k].view(2, dim, nw, tokens)
                gr, gi = grad_v[0].unsqueeze(-1), grad_v[1].unsqueeze(-1)
                # v = sum_t b_t w_t: dL/db_t = sum conj(w_t) G in re/im parts; dL/dw_t = conj(b_t) G.
                grad_b[0] += (w[0] * gr + w[1] * gi).sum((0, 1))
                grad_b[1] += (w[0] * gi - w[1] * gr).sum((0, 1))
                xg[:2] = outputs[k]
                xg[2].view(dim, nw, tokens).copy_(gr * b_re + gi * b_im)
                xg[3].view(dim, nw, tokens).copy_(gi * b_re - gr * b_im)
                _run_adjoint(plan, gates, c, ns, ga[k].unbind(0))
                if k > 0:
                    carried = xg[2:].view(2, dim, nw, tokens).sum(-1)
            grad_angles[:, w0:w0 + nw] = torch.sum(ga, 0).mul_(0.5).view(num_gates, nw, tokens)
        return grad_angles, grad_b[0], grad_b[1], None, None, None, None


@torch.compiler.disable  # eager by design: inductor's CPU code for these loops compiled for minutes and ran slower
def lcu_powers(angles: torch.Tensor, b_re: torch.Tensor, b_im: torch.Tensor, qubits: int,
               gates: Sequence[QuixerGate], degree: int, chunk: int | None = None) -> torch.Tensor:
    """M^k |0...0> for k = 1..degree, where M = sum_t b_t U(angles[:, w, t]) for each window w.

    angles: [len(gates), W, T] (gate-major so each gate's angles are contiguous); b_re, b_im: [T].
    Returns [degree, 2, 2**qubits, W]. Gradients by the adjoint method (see the module docstring).
    `chunk` windows are simulated at a time (default: cache-sized on CPU, all at once on GPU)."""
    if angles.dim() != 3 or angles.shape[0] != len(gates):
        raise ValueError(f"angles must be [{len(gates)}, W, T], got {tuple(angles.shape)}")
    if len(gates) % 2:
        raise ValueError("the ping-pong buffers need an even number of gates (circuit 14 has 4n per layer)")
    if chunk is None:
        chunk = CPU_CHUNK_WINDOWS if angles.device.type == "cpu" else max(1, angles.shape[1])
    return _LcuPowers.apply(angles.contiguous(), b_re.contiguous(), b_im.contiguous(), qubits,
                            tuple(gates), degree, chunk)


def polynomial_state(angles: torch.Tensor, b_re: torch.Tensor, b_im: torch.Tensor, coeffs: torch.Tensor,
                     qubits: int, gates: Sequence[QuixerGate], chunk: int | None = None) -> torch.Tensor:
    """psi = (sum_k c_k M^k |0...0>) / ||c||_1 for each window: [2, 2**qubits, W], not normalised (its
    squared norm is the post-selection probability). coeffs [d+1], c[0] the constant term."""
    windows = angles.shape[1]
    powers = lcu_powers(angles, b_re, b_im, qubits, gates, coeffs.shape[0] - 1, chunk)
    psi = coeffs[0] * zero_planes(qubits, windows, angles.dtype, angles.device)
    psi = psi + torch.einsum("k,krnw->rnw", coeffs[1:], powers)
    return psi / coeffs.abs().sum()


def pauli_expectations(state: torch.Tensor, qubits: int) -> torch.Tensor:
    """<X_i>, <Y_i>, <Z_i> of normalised [2, 2**n, B] states -> [3n, B] ordered X_0..X_{n-1}, Y_.., Z_..."""
    xs, ys, zs = [], [], []
    for w in range(qubits):
        v = _wire_view(state, qubits, w)
        r0, r1, m0, m1 = v[0, :, 0], v[0, :, 1], v[1, :, 0], v[1, :, 1]
        xs.append(2 * (r0 * r1 + m0 * m1).sum((0, 1)))
        ys.append(2 * (r0 * m1 - m0 * r1).sum((0, 1)))
        zs.append((r0 * r0 + m0 * m0 - r1 * r1 - m1 * m1).sum((0, 1)))
    return torch.stack(xs + ys + zs)

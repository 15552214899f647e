"""In-place gate kernels on preallocated buffers (no autograd): the gate loops of the adjoint method.

A plan holds every view a gate touches, built once per pair of ping-pong buffers, so a gate loop issues
only arithmetic (building views per gate call cost about a fifth of the run time). The forward loop applies
the gates; the adjoint loop walks them backwards on [v, g] (the state and its incoming gradient, taken after
each gate), writing each gate's angle gradient and undoing the gate on both (gates are unitary, so the
inverse gate recomputes the earlier state exactly).
"""

from __future__ import annotations

from typing import Sequence

import torch

from .circuits import QUARTERS, QuixerGate, control_halves, quarter, wire_view


def gate_views(src: torch.Tensor, dst: torch.Tensor, n: int, gate: QuixerGate) -> tuple:
    """Views that gate src -> dst needs: RY (src, dst, s0, s1, d0, d1); CRX (s_off, d_off, s_on, d_on,
    the four (re/im, target bit) quarters of s_on, then of d_on)."""
    kind, p, q = gate
    if kind == "ry":
        sv, dv = wire_view(src, n, p), wire_view(dst, n, p)
        return (src, dst, sv[:, :, 0], sv[:, :, 1], dv[:, :, 0], dv[:, :, 1])
    s_off, s_on, td = control_halves(src, n, p, q)
    d_off, d_on, _ = control_halves(dst, n, p, q)
    return (s_off, d_off, s_on, d_on, *[quarter(s_on, td, a, b) for a, b in QUARTERS],
            *[quarter(d_on, td, a, b) for a, b in QUARTERS])


def apply_gate(kind: str, views: tuple, c: torch.Tensor, s: torch.Tensor) -> None:
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


def forward_plan(x: torch.Tensor, y: torch.Tensor, n: int, gates: Sequence[QuixerGate]) -> list[tuple]:
    """QuixerGate g reads x (g even) or y (g odd); with an even gate count the result lands back in x."""
    return [gate_views(*((x, y) if g % 2 == 0 else (y, x)), n, gate) for g, gate in enumerate(gates)]


def run_forward(plan: list[tuple], gates: Sequence[QuixerGate], cos: Sequence[torch.Tensor],
                sin: Sequence[torch.Tensor]) -> None:
    for (kind, _, _), views, c, s in zip(gates, plan, cos, sin):
        apply_gate(kind, views, c, s)


def _grad_views(xg: torch.Tensor, scratch: torch.Tensor, n: int, gate: QuixerGate) -> tuple:
    """Views for one gate's angle gradient from xg = [v_re, v_im, g_re, g_im] just after the gate:
    (product buffer, then the factor pairs whose products it sums)."""
    kind, p, q = gate
    if kind == "ry":
        v = wire_view(xg, n, p)
        pairs = ((v[2:, :, 1], v[:2, :, 0]), (v[2:, :, 0], v[:2, :, 1]))
    else:
        _, on, td = control_halves(xg, n, p, q)
        v_on, g_on = on[0:1], on[1:2]
        pairs = tuple((quarter(g_on, td, a, b), quarter(v_on, td, 1 - a, 1 - b)) for a, b in QUARTERS)
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


def adjoint_plan(xg: torch.Tensor, y: torch.Tensor, scratch: torch.Tensor, n: int,
                 gates: Sequence[QuixerGate]) -> list[tuple]:
    """Backward walk over reversed gates, step j reading xg (j even) or y (j odd): per step the angle
    gradient views and the inverse-gate views. With an even gate count it ends back in xg."""
    plan = []
    for j, gate in enumerate(reversed(gates)):
        src, dst = (xg, y) if j % 2 == 0 else (y, xg)
        plan.append((_grad_views(src, scratch, n, gate), gate_views(src, dst, n, gate)))
    return plan


def run_adjoint(plan: list[tuple], gates: Sequence[QuixerGate], cos: Sequence[torch.Tensor],
                neg_sin: Sequence[torch.Tensor], grad_rows: Sequence[torch.Tensor]) -> None:
    """Walk the circuit backwards on [v, g] at its output: write each gate's doubled angle gradient into
    its row of grad_rows, then undo the gate on v and pull g back through it (the inverse, and the
    transpose, of a rotation is the rotation with -sin)."""
    for j, (grad_views, views) in enumerate(plan):
        g = len(gates) - 1 - j
        kind = gates[g][0]
        _angle_grad(kind, grad_views, grad_rows[g])
        apply_gate(kind, views, cos[g], neg_sin[g])

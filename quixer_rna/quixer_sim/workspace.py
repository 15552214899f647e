"""Workspaces: the static buffers, prebuilt views and two gate loops that chunks of windows are simulated
in, and the cache that keeps them from call to call.

Windows are simulated in chunks that share one workspace (ping-pong state buffers, adjoint buffers, cos/sin
rows). Chunks are balanced and a short last chunk runs padded in the same workspace, so one workspace per
(device, dtype, circuit, chunk, tokens, stream) is built, cached (least recently used evicted) and reused by
every later call, its CUDA graphs with it.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from typing import Iterator

import torch

from .circuits import QuixerGate
from .graphs import StaticLoop
from .kernels import adjoint_plan, forward_plan, run_adjoint, run_forward
from .memory import memory_budget_bytes, simulation_bytes_per_window

MAX_CACHED_WORKSPACES = 8    # each with its buffers and, on CUDA, two graphs


class Workspace:
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
            forward = forward_plan(self.xg[:2], self.y[:2], qubits, gates)
            adjoint = adjoint_plan(self.xg, self.y, self.scratch, qubits, gates)
            cos, sin, rows = self.cos.unbind(0), self.sin.unbind(0), self.rows.unbind(0)
            # per-window views [.., chunk, T]: a chunk of nw windows is [..., :nw, :]
            self.x4 = self.xg[:2].view(2, dim, chunk, tokens)
            self.xg4 = self.xg.view(4, dim, chunk, tokens)
            self.cos3, self.sin3 = self.cos.view(num_gates, chunk, tokens), self.sin.view(num_gates, chunk, tokens)
            self.rows3 = self.rows.view(num_gates, chunk, tokens)
        self.forward = StaticLoop(lambda: run_forward(forward, gates, cos, sin), like.device)
        self.adjoint = StaticLoop(lambda: run_adjoint(adjoint, gates, cos, sin, rows), like.device)
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


class WorkspaceCache:
    """Workspaces by (device, dtype, qubits, gates, chunk, tokens, CUDA stream), least recently used first,
    at most `max_entries` in all and no more bytes per device than the device's memory budget."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple, Workspace] = OrderedDict()
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Drop every workspace (its buffers and CUDA graphs go once no call still uses it)."""
        with self._lock:
            self._entries.clear()

    def info(self) -> list[dict]:
        """One dict per workspace: device, dtype, qubits, chunk, tokens, bytes, and the state of its forward
        and adjoint loops ('eager', 'warming', 'graph', 'failed')."""
        with self._lock:
            items = list(self._entries.items())
        return [{"device": str(key[0]), "dtype": str(key[1]).replace("torch.", ""), "qubits": key[2],
                 "chunk": key[4], "tokens": key[5], "bytes": ws.nbytes, "forward": ws.forward.state,
                 "adjoint": ws.adjoint.state, "captures": ws.forward.captures + ws.adjoint.captures}
                for key, ws in items]

    @contextlib.contextmanager
    def borrow(self, like: torch.Tensor, qubits: int, gates: tuple[QuixerGate, ...], chunk: int,
               tokens: int) -> Iterator[Workspace]:
        """The cached workspace for this shape on this stream (built on a miss, after evicting what the
        limits ask), held exclusively while in use; if another thread holds it, a private uncached one."""
        stream = torch.cuda.current_stream(like.device).stream_id if like.device.type == "cuda" else None
        key = (like.device, like.dtype, qubits, gates, chunk, tokens, stream)
        with self._lock:
            workspace = self._entries.get(key)
            if workspace is not None:
                self._entries.move_to_end(key)
        if workspace is None:
            incoming = chunk * simulation_bytes_per_window(qubits, tokens, 0, like.dtype, num_gates=len(gates),
                                                           part="chunk")
            with self._lock:   # drop LRU workspaces first, so their memory can be reused
                self._evict(like.device, incoming)
            try:
                workspace = Workspace(like, qubits, gates, chunk, tokens)
            except torch.OutOfMemoryError:   # cached workspaces of other shapes may be what is in the way
                with self._lock:
                    for other in [k for k in self._entries if k[0] == like.device]:
                        del self._entries[other]
                workspace = Workspace(like, qubits, gates, chunk, tokens)
            with self._lock:
                workspace = self._entries.setdefault(key, workspace)
        private = not workspace.lock.acquire(blocking=False)
        if private:
            workspace = Workspace(like, qubits, gates, chunk, tokens)
        try:
            yield workspace
        finally:
            if not private:
                workspace.lock.release()

    def _evict(self, device: torch.device, incoming: int) -> None:
        """Under the lock: make room for a new workspace of `incoming` bytes on `device`: least recently
        used first, down to max_entries - 1 in all and to the device's budget on that device."""
        while len(self._entries) >= self.max_entries:
            self._entries.popitem(last=False)
        budget = memory_budget_bytes(device)
        mine = [key for key in self._entries if key[0] == device]
        cached = sum(self._entries[key].nbytes for key in mine)
        for key in mine:
            if cached + incoming <= budget:
                break
            cached -= self._entries.pop(key).nbytes


# The process's workspaces: every lcu_powers and run_circuit call borrows from here.
WORKSPACES = WorkspaceCache(MAX_CACHED_WORKSPACES)

"""Gate loops over static buffers, captured once into CUDA graphs and replayed (eager on CPU and meta).

A workspace's two gate loops (forward, adjoint: ~4,000 small kernels per step at n=6, L=4, d=3) replayed
as CUDA graphs cost a few dozen launches instead of thousands. The first GRAPH_WARMUP_CALLS calls of a
loop run eagerly on a side stream (the warm-up), the next one captures (this synchronises the device, once
per loop) and replays. Switch off with `use_cuda_graphs=False` (lcu_powers, run_circuit), this module's
flag USE_CUDA_GRAPHS (read at every call), or QUIXER_CUDA_GRAPHS=0 in the environment; a capture that
fails falls back to eager for that loop with one warning. The four hooks below are the only code that
touches the CUDA graph API (tests replace them to drive the state machine on CPU).
"""

from __future__ import annotations

import os
import warnings
from typing import Callable

import torch

USE_CUDA_GRAPHS = os.environ.get("QUIXER_CUDA_GRAPHS", "1").strip().lower() not in ("0", "false", "no", "off")
GRAPH_WARMUP_CALLS = 2       # eager calls of a gate loop (on a side stream) before it is captured


def graphs_wanted(use_cuda_graphs: bool | None) -> bool:
    """A caller's choice, or USE_CUDA_GRAPHS when it made none."""
    return USE_CUDA_GRAPHS if use_cuda_graphs is None else bool(use_cuda_graphs)


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


class StaticLoop:
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

"""Memory: what the simulator holds per window, the memory a device has available, the simulator's budget
on it, and the chunk size (windows simulated at a time) that the budget implies.

`available_bytes` is the project's one memory probe (the trainer refuses a step that cannot fit by it).
`simulation_bytes_per_window` / `simulation_total_bytes` give the simulator's own needs (at 1024 windows x
32 tokens, n=6, L=4, d=3, float32: 48 MiB of saved outputs, 173 MiB in all when simulated at once; at n=14,
12.8 GiB even one window at a time, 31 GiB at once). The saved outputs are held for every window whatever
the chunking: once chunked they dominate.
"""

from __future__ import annotations

import functools
import math

import torch

# Windows per chunk in the CPU forward/backward (64 x T states): big enough to amortise the per-op
# overhead, small enough to stay near cache; 32..128 measured within a few percent of each other.
CPU_CHUNK_WINDOWS = 64

# Default memory budgets of lcu_powers (held tensors + one workspace), as fractions of the memory available
# the first time a device is asked (cached per device: `memory_budget_bytes`).
CUDA_MEMORY_FRACTION = 0.5
CPU_MEMORY_FRACTION = 0.25

# Small per-window temporaries of the chunk loops, in units of 2**n elements (v, matvec results, stacked v;
# in backward the summed incoming gradient, its flattened halves, the carried gradient).
_TRANSIENT_STATE_VECTORS = 8


def available_bytes(device: torch.device | str) -> float:
    """Memory a run may still use on `device`: on CUDA the free memory plus what PyTorch's allocator has
    cached but not handed out (cudaMemGetInfo: not a stream synchronisation); elsewhere the host's
    MemAvailable. Meta tensors hold no memory, and a host that does not say (no /proc/meminfo): unlimited."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return float(free + max(0, cached))
    if device.type == "meta":
        return math.inf
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return math.inf


def memory_budget_bytes(device: torch.device | str) -> float:
    """Default budget of lcu_powers on `device`: CUDA_MEMORY_FRACTION of available_bytes on CUDA,
    CPU_MEMORY_FRACTION elsewhere, read ONCE per device and process and cached, so the chunk size, and with
    it the captured CUDA graphs, stays the same from step to step (clear_budgets() forgets it)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return _budget(device)


@functools.cache
def _budget(device: torch.device) -> float:
    return (CUDA_MEMORY_FRACTION if device.type == "cuda" else CPU_MEMORY_FRACTION) * available_bytes(device)


def clear_budgets() -> None:
    """Forget the cached budgets: the next call reads the available memory again."""
    _budget.cache_clear()


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


def circuit_chunk(states: int, qubits: int, dtype: torch.dtype, device: torch.device | str,
                  budget_bytes: float | None, num_gates: int) -> int:
    """States per chunk for run_circuit (one circuit per state, no powers): as chunk_windows, and on CPU as
    many states as lcu_powers has in a chunk at 32 tokens."""
    return _fit_chunk(states, qubits, 1, 1, dtype, device, budget_bytes, num_gates, CPU_CHUNK_WINDOWS * 32)


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

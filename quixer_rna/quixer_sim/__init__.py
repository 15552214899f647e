"""Pure-PyTorch statevector simulator for Quixer's circuits (not lambeq's: see quixer_rna.lambeq_sim and
DEVELOPERS.md, "Two simulators"): circuit-14 layers of RY and CRX gates, the LCU of per-token circuits, its
powers applied to |0...0>, and Pauli expectations. One module per concern, read in this order:

  circuits   the gate list, the state layout [2 (re/im), 2**n, batch], plain-autograd gates (the reference)
  kernels    in-place gate kernels on prebuilt views: the forward and adjoint gate loops
  memory     bytes per window, the memory probe (available_bytes), budgets and chunk sizes
  graphs     a gate loop run eagerly or captured once as a CUDA graph and replayed
  workspace  the static buffers a chunk is simulated in, and the cache that reuses them from call to call
  autograd   lcu_powers, polynomial_state, run_circuit: forward and adjoint backward, chunk by chunk
  pauli      the readout <X_i>, <Y_i>, <Z_i>

The names below are the package's interface. Settings stay in the module that reads them, where setting
them takes effect: graphs.USE_CUDA_GRAPHS (or QUIXER_CUDA_GRAPHS=0 in the environment), memory's
CPU_CHUNK_WINDOWS and memory fractions, workspace.WORKSPACES.max_entries.
"""

from __future__ import annotations

from .autograd import lcu_powers, polynomial_state, run_circuit
from .circuits import QuixerGate, apply_circuit, circuit14_gates, zero_planes
from .graphs import GRAPH_WARMUP_CALLS
from .memory import (
    available_bytes,
    chunk_windows,
    clear_budgets,
    memory_budget_bytes,
    simulation_bytes_per_window,
    simulation_total_bytes,
)
from .pauli import clear_pauli_tables, pauli_expectations
from .workspace import WORKSPACES

__all__ = [
    "GRAPH_WARMUP_CALLS", "QuixerGate", "apply_circuit", "available_bytes", "chunk_windows", "circuit14_gates",
    "clear_simulator_cache", "lcu_powers", "memory_budget_bytes", "pauli_expectations", "polynomial_state",
    "run_circuit", "simulation_bytes_per_window", "simulation_total_bytes", "simulator_cache_info", "zero_planes",
]


def clear_simulator_cache() -> None:
    """Drop every cached workspace (buffers and CUDA graphs), the cached memory budgets and Pauli tables."""
    WORKSPACES.clear()
    clear_budgets()
    clear_pauli_tables()


def simulator_cache_info() -> list[dict]:
    """One dict per cached workspace: device, dtype, qubits, chunk, tokens, bytes, and the state of its
    forward and adjoint loops ('eager', 'warming', 'graph', 'failed')."""
    return WORKSPACES.info()

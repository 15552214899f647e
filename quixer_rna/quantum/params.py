"""What the circuit of one window needs, taken from a trained QuixerModel, and the register sizes.

`quixer_states` runs the model's quantum part through the pure-torch simulator in float64 and keeps,
per window, everything the later steps use: the circuit parameters (token angles, LCU coefficients b,
polynomial coefficients c, readout angles), the un-normalised post-selected state psi, its squared norm
(the post-selection success probability), the normalised state after the readout layer and the 3n
Pauli expectations. `window_circuit` cuts one window's `WindowCircuit` out of it; `random_circuit`
makes one of any size for counting without a model.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from ..quixer_sim import QuixerGate, apply_circuit, circuit14_gates, pauli_expectations, polynomial_state


def index_qubits(tokens: int) -> int:
    """ceil(log2 T) qubits address T tokens (none for a single token)."""
    return (tokens - 1).bit_length()


def degree_qubits(degree: int) -> int:
    """ceil(log2(d+1)) qubits hold the power k = 0..d."""
    return degree.bit_length()


def qubit_counts(qubits: int, tokens: int, degree: int) -> dict[str, int]:
    """Register sizes of both variants: d fresh index registers (the circuit that is built, simulated and
    counted) or one index register measured, kept on outcome 0 and reset after each application of M."""
    m, r = index_qubits(tokens), degree_qubits(degree)
    return {
        "data": qubits,
        "index_register": m,
        "index_registers": degree,
        "index": degree * m,
        "degree": r,
        "ancillas": degree * m + r,
        "total": qubits + degree * m + r,
        "ancillas_measure_reset": m + r,
        "total_measure_reset": qubits + m + r,
    }


@dataclass(frozen=True)
class WindowCircuit:
    """One window's circuit parameters (float64 / complex128 numpy)."""

    qubits: int
    gates: tuple[QuixerGate, ...]          # circuit-14 gates of each token unitary U_t
    angles: np.ndarray                     # [T, G] radians
    lcu: np.ndarray                        # [T] complex b_t, sum |b_t| = 1
    poly: np.ndarray                       # [d+1] real c_k (any sign), c[0] the constant term
    readout_gates: tuple[QuixerGate, ...]
    readout_angles: np.ndarray             # [len(readout_gates)]

    @property
    def tokens(self) -> int:
        return int(self.angles.shape[0])

    @property
    def degree(self) -> int:
        return int(self.poly.shape[0]) - 1


@dataclass
class QuixerStates:
    """Per-window simulator results for W windows (float64)."""

    qubits: int
    gates: tuple[QuixerGate, ...]
    readout_gates: tuple[QuixerGate, ...]
    angles: np.ndarray           # [W, T, G]
    lcu: np.ndarray              # [T] complex
    poly: np.ndarray             # [d+1]
    readout_angles: np.ndarray   # [G_r]
    psi: np.ndarray              # [W, 2**n] complex: (1/||c||_1) sum_k c_k M^k |0>, not normalised
    success: np.ndarray          # [W] ||psi||^2, the post-selection success probability
    readout_state: np.ndarray    # [W, 2**n] complex: psi/||psi|| after the readout layer
    features: np.ndarray         # [W, 3n] <X_i>, <Y_i>, <Z_i> of readout_state

    @property
    def windows(self) -> int:
        return int(self.psi.shape[0])

    @property
    def tokens(self) -> int:
        return int(self.angles.shape[1])

    @property
    def degree(self) -> int:
        return int(self.poly.shape[0]) - 1


def _complex(planes: torch.Tensor) -> np.ndarray:
    """[2, N, W] real/imaginary planes -> complex [W, N]."""
    planes = planes.detach().double()
    return (planes[0].numpy() + 1j * planes[1].numpy()).T.copy()


@contextlib.contextmanager
def _float64_eval(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The model itself in eval mode with float64 parameters for the duration (float32 -> float64 -> float32
    is exact), then back to its own dtype and mode. Not a deep copy: a model that has run a forward with
    autograd holds non-leaf tensors, which deepcopy refuses."""
    dtype = next(model.parameters()).dtype
    training = model.training
    model.double().eval()
    try:
        yield model
    finally:
        model.to(dtype).train(training)


@torch.no_grad()
def quixer_states(model: torch.nn.Module, context: torch.Tensor) -> QuixerStates:
    """Simulate the quantum part of a QuixerModel (in eval mode, float64) on context tokens [W, T]."""
    with _float64_eval(model) as twin:
        n = twin.qubits
        angles = twin.token_angles(twin.embedding(context.long())) * twin.angle_mask      # [W, T, G]
        b_re, b_im = twin.lcu_coefficients()
        poly = twin.poly_coeffs.detach().clone()
        psi = polynomial_state(angles.permute(2, 0, 1), b_re, b_im, poly, n, twin.gates)
        norm2 = (psi * psi).sum((0, 1))
        normalised = psi / torch.sqrt(norm2.clamp_min(1e-300))
        readout_angles = twin.readout_angles.detach().clone()
        readout = apply_circuit(normalised, readout_angles.unsqueeze(-1), n, twin.readout_gates)
        features = pauli_expectations(readout, n).transpose(0, 1)
    return QuixerStates(
        qubits=n,
        gates=tuple(model.gates),
        readout_gates=tuple(model.readout_gates),
        angles=angles.numpy().copy(),
        lcu=b_re.numpy() + 1j * b_im.numpy(),
        poly=poly.numpy(),
        readout_angles=readout_angles.numpy(),
        psi=_complex(psi),
        success=norm2.numpy().copy(),
        readout_state=_complex(readout),
        features=features.numpy().copy(),
    )


def window_circuit(states: QuixerStates, window: int) -> WindowCircuit:
    """The circuit parameters of window `window` (a position in `states`, not a test-set index)."""
    return WindowCircuit(
        qubits=states.qubits,
        gates=states.gates,
        angles=states.angles[window],
        lcu=states.lcu,
        poly=states.poly,
        readout_gates=states.readout_gates,
        readout_angles=states.readout_angles,
    )


def random_circuit(qubits: int, layers: int, degree: int, tokens: int, seed: int = 0) -> WindowCircuit:
    """A circuit of the given size with generic random parameters (complex b, signed c), for counting
    resources without a trained model."""
    rng = np.random.default_rng(seed)
    gates = tuple(circuit14_gates(qubits, layers))
    readout_gates = tuple(circuit14_gates(qubits, 1))
    lcu = rng.normal(size=tokens) + 1j * rng.normal(size=tokens)
    return WindowCircuit(
        qubits=qubits,
        gates=gates,
        angles=rng.uniform(-np.pi, np.pi, size=(tokens, len(gates))),
        lcu=lcu / np.abs(lcu).sum(),
        poly=rng.normal(size=degree + 1),
        readout_gates=readout_gates,
        readout_angles=rng.uniform(-np.pi, np.pi, size=len(readout_gates)),
    )

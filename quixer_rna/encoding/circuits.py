"""The k-mer circuits, built with lambeq: the ansatz, the tetrahedral encoding layer, the template circuit
every k-mer shares, stairs_reader's STAIR box, and lambeq's own evaluation (the tests' reference).

lambeq is imported inside the functions that use it: `import lambeq` takes seconds and ~0.5 GB.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import UserError
from ..kmers import BASES, id_to_kmer

ANSATZE = ("IQP", "Sim14", "Sim15", "StronglyEntangling")
DEFAULT_ANSATZ = "Sim14"
DEFAULT_LAYERS = 1
ENCODING_SYMBOL = "enc"

_TETRAHEDRON = {"A": (1, 1, 1), "C": (1, -1, -1), "G": (-1, 1, -1), "T": (-1, -1, 1)}
_INDEX_SUFFIX = re.compile(r"_(\d+)$")


def base_angles() -> torch.Tensor:
    """float64 [4, 2]: (Ry, Rz) phases in turns taking |0> to the tetrahedral state of A, C, G, T."""
    rows = []
    for base in BASES:
        x, y, z = (c / math.sqrt(3) for c in _TETRAHEDRON[base])
        rows.append((math.acos(z) / (2 * math.pi), math.atan2(y, x) / (2 * math.pi)))
    return torch.tensor(rows, dtype=torch.float64)


def kmer_angles(kmer: str) -> list[float]:
    """The encoding angles of one k-mer: (theta_j, phi_j) of base j, in order."""
    table = base_angles()
    return [float(v) for base in kmer for v in table[BASES.index(base)]]


def symbol_index(name: str) -> int:
    """The number a lambeq symbol ends with: `x__s_10` -> 10 (sorting names would put _10 before _2)."""
    match = _INDEX_SUFFIX.search(name)
    if match is None:
        raise ValueError(f"symbol {name!r} has no _<index> suffix")
    return int(match.group(1))


def _ansatz_class(name: str) -> type:
    import lambeq

    classes = {
        "IQP": lambeq.IQPAnsatz,
        "Sim14": lambeq.Sim14Ansatz,
        "Sim15": lambeq.Sim15Ansatz,
        "StronglyEntangling": lambeq.StronglyEntanglingAnsatz,
    }
    if name not in classes:
        raise UserError(f"--ansatz {name}: expected one of {', '.join(ANSATZE)}")
    return classes[name]


def sentence_type() -> Any:
    from lambeq import AtomicType

    return AtomicType.SENTENCE


def encoding_layer(n_qubits: int, angles: Sequence[Any]) -> Any:
    """lambeq circuit on n qubits: for base j, Ry(angles[2j]) then Rz(angles[2j+1]) on qubit j mod n."""
    from lambeq.backend.quantum import Id

    circuit = Id(n_qubits)
    for j in range(len(angles) // 2):
        circuit = circuit.Ry(angles[2 * j], j % n_qubits).Rz(angles[2 * j + 1], j % n_qubits)
    return circuit


def prepend_encoding(word_circuit: Any, angles: Sequence[Any], n_qubits: int) -> Any:
    """Insert the encoding layer between the Kets an ansatz puts first in a word's circuit and its gates."""
    from lambeq.backend.quantum import Diagram, Ket, Ty, qubit

    layers = word_circuit.layers
    if len(layers) < n_qubits or not all(isinstance(layer.box, Ket) for layer in layers[:n_qubits]):
        raise ValueError("expected a word circuit that starts with one Ket per qubit")
    kets = Diagram(dom=Ty(), cod=qubit**n_qubits, layers=list(layers[:n_qubits]))
    gates = Diagram(dom=qubit**n_qubits, cod=word_circuit.cod, layers=list(layers[n_qubits:]))
    return kets >> encoding_layer(n_qubits, angles) >> gates


def make_ansatz(name: str, n_qubits: int, layers: int, k: int) -> Any:
    """The lambeq ansatz `name` with the encoding layer prepended to the circuit of every k-mer word
    (a word whose name is a k-mer of length k; other boxes, e.g. STAIR, are left as the ansatz makes them)."""
    base = _ansatz_class(name)
    kmer = re.compile(r"[ACGT]{%d}" % k)

    class EncodedAnsatz(base):  # type: ignore[misc, valid-type]
        def _ar(self, functor: Any, box: Any) -> Any:
            circuit = super()._ar(functor, box)
            if box.dom or not kmer.fullmatch(box.name):
                return circuit
            return prepend_encoding(circuit, kmer_angles(box.name), n_qubits)

    return EncodedAnsatz({sentence_type(): n_qubits}, layers)


def kmer_circuit(kmer: str, ansatz: str, n_qubits: int, layers: int) -> Any:
    """The lambeq circuit of one k-mer (concrete encoding angles, symbolic shared weights)."""
    from lambeq.backend.grammar import Word

    return make_ansatz(ansatz, n_qubits, layers, len(kmer))(Word(kmer, sentence_type()))


def template_circuit(k: int, ansatz: str, n_qubits: int, layers: int) -> Any:
    """The circuit every k-mer shares: the encoding angles as symbols enc_0 .. enc_{2k-1}."""
    from lambeq.backend.grammar import Word
    from lambeq.backend.symbol import Symbol

    word = Word(id_to_kmer(0, k), sentence_type())
    plain = _ansatz_class(ansatz)({sentence_type(): n_qubits}, layers)(word)
    symbols = [Symbol(f"{ENCODING_SYMBOL}_{i}") for i in range(2 * k)]
    return prepend_encoding(plain, symbols, n_qubits)


def stair_circuit(ansatz: str, n_qubits: int, layers: int) -> Any:
    """The ansatz's circuit of stairs_reader's STAIR box (2n qubits in, n out by post-selection)."""
    from lambeq.text2diagram.linear_reader import stairs_reader

    return _ansatz_class(ansatz)({sentence_type(): n_qubits}, layers)(stairs_reader.combining_diagram)


def evaluate_with_lambeq(circuit: Any, values: Callable[[str], float]) -> np.ndarray:
    """lambeq's own evaluation (tensor contraction) with every symbol set to values(name): amplitudes."""
    symbols = sorted(circuit.free_symbols, key=lambda s: s.name)
    concrete = circuit.lambdify(*symbols)(*[values(s.name) for s in symbols])
    return np.asarray(concrete.eval(), dtype=np.complex128).reshape(-1)

"""The batched encoder: the template circuits of one configuration, read from lambeq once and evaluated in
torch for every k-mer (the 4^k x D table), the stairs context over windows, and the dense per-window export."""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import UserError
from ..formats.kmer_stream import KmerStream
from ..lambeq_sim import LambeqCircuit, complex_dtype, simulate
from ..progress import Progress
from ..runio import atomic_torch_save
from .circuits import (
    DEFAULT_ANSATZ,
    DEFAULT_LAYERS,
    ENCODING_SYMBOL,
    base_angles,
    kmer_angles,
    stair_circuit,
    symbol_index,
    template_circuit,
)
from .translate import read_circuit

READOUTS = ("probabilities", "amplitudes")
MAX_QUBITS = 14
DISTINCT_TOLERANCE = 1e-9
FLOAT32_DISTINCT_TOLERANCE = 1e-6  # a float32 (CUDA) table cannot resolve 1e-9


def qubits_for(embedding_dim: int, readout: str) -> int:
    """Qubits n whose readout has `embedding_dim` numbers: 2^n probabilities or 2 * 2^n amplitude parts."""
    if readout not in READOUTS:
        raise UserError(f"--readout {readout}: expected one of {', '.join(READOUTS)}")
    size = embedding_dim if readout == "probabilities" else embedding_dim / 2
    n = round(math.log2(size)) if size >= 1 else -1
    valid = [2**q for q in range(1, MAX_QUBITS + 1)] if readout == "probabilities" else [2 ** (q + 1) for q in range(1, MAX_QUBITS + 1)]
    if n < 1 or n > MAX_QUBITS or embedding_dim not in valid:
        what = "2^n probabilities" if readout == "probabilities" else "2 * 2^n real and imaginary amplitude parts"
        raise UserError(
            f"--embedding_dim {embedding_dim}: with --readout {readout} it must be {what} of n = 1..{MAX_QUBITS} "
            f"qubits, e.g. {valid[:6]}"
        )
    return n


def kmer_ids_to_digits(ids: torch.Tensor, k: int) -> torch.Tensor:
    """int64 [..., k] base digits (first base first) of k-mer ids."""
    powers = 4 ** torch.arange(k - 1, -1, -1, device=ids.device)
    return torch.div(ids.unsqueeze(-1), powers, rounding_mode="floor") % 4


def encoding_params(ids: torch.Tensor, k: int) -> torch.Tensor:
    """float64 [B, 2k]: (theta_j, phi_j) of every base, the values of symbols enc_0 .. enc_{2k-1}."""
    angles = base_angles().to(ids.device)
    return angles[kmer_ids_to_digits(ids, k)].reshape(ids.shape[0], 2 * k)


def readout_of(states: torch.Tensor, readout: str) -> torch.Tensor:
    """Probabilities |a|^2, or [Re(a), Im(a)] concatenated, of amplitudes [B, 2^n]."""
    if readout == "probabilities":
        return states.abs() ** 2
    return torch.cat((states.real, states.imag), dim=-1)


def require_positive(flag: str, value: int) -> None:
    if value < 1:
        raise UserError(f"{flag} {value}: must be at least 1")


def shared_weights(count: int, seed: int, stream: int) -> torch.Tensor:
    """float64 [count] phases uniform in [0, 1) turns; `stream` separates the word and STAIR weights."""
    generator = torch.Generator().manual_seed(int(seed) * 1000003 + stream)
    return torch.rand(count, generator=generator, dtype=torch.float64)


@dataclass
class KmerEncoder:
    """The template circuits of one configuration, read from lambeq once, evaluated in torch."""

    k: int
    n_qubits: int
    ansatz: str
    layers: int
    readout: str
    seed: int
    word: LambeqCircuit
    word_weights: torch.Tensor
    stair: LambeqCircuit | None = None
    stair_weights: torch.Tensor | None = None

    @classmethod
    def build(cls, k: int, n_qubits: int, ansatz: str, layers: int, readout: str, seed: int, stairs: bool = False) -> "KmerEncoder":
        require_positive("--k", k)
        require_positive("--layers", layers)
        encoding_count = 2 * k

        def word_param(name: str) -> int:
            index = symbol_index(name)
            return index if name.startswith(f"{ENCODING_SYMBOL}_") else encoding_count + index

        word = read_circuit(template_circuit(k, ansatz, n_qubits, layers), word_param)
        word_weights = shared_weights(max(word.n_params - encoding_count, 0), seed, stream=0)
        stair = stair_weights = None
        if stairs:
            stair = read_circuit(stair_circuit(ansatz, n_qubits, layers), symbol_index)
            stair_weights = shared_weights(stair.n_params, seed, stream=1)
        return cls(k, n_qubits, ansatz, layers, readout, seed, word, word_weights, stair, stair_weights)

    def word_value(self, name: str, kmer: str | None = None) -> float:
        """The value of a symbol of a k-mer's lambeq circuit (used to evaluate it with lambeq)."""
        if name.startswith("STAIR"):
            return float(self.stair_weights[symbol_index(name)])
        if name.startswith(f"{ENCODING_SYMBOL}_"):
            return kmer_angles(kmer)[symbol_index(name)]
        return float(self.word_weights[symbol_index(name)])

    def states(self, ids: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Amplitudes [B, 2^n] of the k-mers `ids` [B]."""
        count = 2 * self.k  # the encoding layer: the template's first 2k gates, the only per-k-mer ones
        encoded = simulate(LambeqCircuit(self.n_qubits, self.word.gates[:count]), encoding_params(ids, self.k).to(dtype))
        shared = torch.cat((torch.zeros(count, dtype=torch.float64), self.word_weights)).to(ids.device, dtype)
        return simulate(LambeqCircuit(self.n_qubits, self.word.gates[count:]), shared.unsqueeze(0), encoded)

    def states_of(self, ids: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Amplitudes [len(ids), 2^n] of k-mers `ids` (on their device), in chunks of at most 256 MB of state."""
        chunk = max(1, (1 << 28) // (2**self.n_qubits * torch.empty(0, dtype=complex_dtype(dtype)).element_size()))
        return torch.cat([self.states(part, dtype) for part in ids.split(chunk)])

    def all_states(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Amplitudes [4^k, 2^n] of every k-mer."""
        return self.states_of(torch.arange(4**self.k, device=device), dtype)

    def table(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """float32 [4^k, D] readout of every k-mer, computed in `dtype` on `device`."""
        return readout_of(self.all_states(device, dtype), self.readout).float().cpu()

    def stair_step(self, prefix: torch.Tensor, word: torch.Tensor) -> torch.Tensor:
        """STAIR(prefix (x) word), post-selected and renormalised: [B, 2^n] x [B, 2^n] -> [B, 2^n]."""
        joint = (prefix.unsqueeze(2) * word.unsqueeze(1)).reshape(prefix.shape[0], -1)
        params = self.stair_weights.to(device=prefix.device, dtype=prefix.real.dtype).unsqueeze(0)
        out = simulate(self.stair, params, joint)
        norm = out.abs().pow(2).sum(dim=1, keepdim=True).sqrt()
        return out / norm.clamp_min(torch.finfo(norm.dtype).tiny)

    def contextual(self, ids: torch.Tensor, word_states: torch.Tensor) -> torch.Tensor:
        """Readouts [B, L, D] of every prefix of windows `ids` [B, L] (word_states: all_states())."""
        words = word_states[ids]
        prefix = words[:, 0]
        outputs = [readout_of(prefix, self.readout)]
        for position in range(1, ids.shape[1]):
            prefix = self.stair_step(prefix, words[:, position])
            outputs.append(readout_of(prefix, self.readout))
        return torch.stack(outputs, dim=1).float()


def encode_kmer_table(
    k: int,
    embedding_dim: int,
    ansatz: str = DEFAULT_ANSATZ,
    layers: int = DEFAULT_LAYERS,
    readout: str = "probabilities",
    seed: int = 0,
    device: "torch.device | str" = "cpu",
) -> torch.Tensor:
    """float32 [4**k, embedding_dim]: row i is the readout of the circuit of k-mer quixer_rna.kmers.id_to_kmer(i, k)."""
    n_qubits = qubits_for(embedding_dim, readout)
    encoder = KmerEncoder.build(k, n_qubits, ansatz, layers, readout, seed)
    device = torch.device(device)
    return encoder.table(device, torch.float64 if device.type == "cpu" else torch.float32)


def count_distinct_rows(table: torch.Tensor, tolerance: float = DISTINCT_TOLERANCE) -> int:
    """Rows that differ by more than `tolerance` somewhere (rows snapped to a grid of that size)."""
    snapped = torch.round(table.double() / tolerance).to(torch.int64)
    return int(torch.unique(snapped, dim=0).shape[0])


def contextual_chunk_size(n_qubits: int, dtype: torch.dtype, budget_bytes: int = 1 << 28) -> int:
    """Windows per stairs step so that the joint 2n-qubit states stay within `budget_bytes`."""
    per_window = (4**n_qubits) * torch.empty(0, dtype=complex_dtype(dtype)).element_size() * 3
    return max(1, budget_bytes // per_window)


def _contextual_part(encoder: KmerEncoder, states: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return encoder.contextual(ids, states).cpu()


def contextual_embeddings(
    encoder: KmerEncoder, states: torch.Tensor, stream: KmerStream, out: np.ndarray, workers: int, progress: Progress,
    chunk: int | None = None,
) -> None:
    """Stairs embeddings of every window of `stream` into `out` [N, L, D], chunk by chunk on the device of
    `states`; on CPU with workers > 1 the chunks go to that many processes (each with the threads
    OMP_NUM_THREADS gives it)."""
    size = chunk or contextual_chunk_size(encoder.n_qubits, states.real.dtype)
    ranges = list(stream.iter_chunks(size))

    def ids_of(begin: int, end: int) -> torch.Tensor:
        return torch.from_numpy(stream.windows(np.arange(begin, end)).astype(np.int64))

    if workers > 1 and states.device.type == "cpu" and len(ranges) > 1:
        import multiprocessing

        with ProcessPoolExecutor(min(workers, len(ranges)), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [(b, e, pool.submit(_contextual_part, encoder, states, ids_of(b, e))) for b, e in ranges]
            for begin, end, future in futures:
                out[begin:end] = future.result().numpy()
                progress.update(end - begin)
    else:
        for begin, end in ranges:
            out[begin:end] = _contextual_part(encoder, states, ids_of(begin, end).to(states.device)).numpy()
            progress.update(end - begin)


def table_rows(table: np.ndarray, rows: np.ndarray | None, ids: np.ndarray) -> np.ndarray:
    """The embeddings of k-mer `ids` from a table of every k-mer (rows None) or of the k-mers `rows` only."""
    ids = ids.astype(np.int64)
    return table[ids if rows is None else np.searchsorted(rows, ids)]


def export_dense(path: Path, embeddings: Callable[[], np.ndarray]) -> None:
    """The seeds' per-window layout {embeddings [N, L, D], labels [N]} as a .pt file (an export)."""
    values = torch.from_numpy(np.ascontiguousarray(embeddings()))
    atomic_torch_save({"embeddings": values, "labels": torch.zeros(values.shape[0], dtype=torch.int64)}, path)

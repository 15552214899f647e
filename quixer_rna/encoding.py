"""k-mers -> lambeq circuits -> embeddings.

Each k-mer is a lambeq word `Word(kmer, S)` that a lambeq ansatz turns into an n-qubit circuit. The
ansatz alone would give every k-mer its own random parameters; here an encoding layer writes the bases
into the circuit first and the ansatz's parameters are shared by every k-mer (seeded), so the circuit of
a k-mer is a fixed template whose only k-mer-dependent parameters are the encoding angles.

Encoding layer: base j goes to qubit j mod n as Ry(theta_b) then Rz(phi_b) (lambeq gates, turns),
which takes |0> to the Bloch vector of vertex b of a regular tetrahedron, A=(1,1,1), C=(1,-1,-1),
G=(-1,1,-1), T=(-1,-1,1) over sqrt(3). Any two distinct vertices have fidelity 1/3, so with k <= n the
encoded product states have overlap |<x|y>|^2 = (1/3)^Hamming(x, y), and the shared (unitary) layers keep
every overlap. With k > n, qubit q carries bases q, q+n, ...: their rotations compose (the later base
rotates the state the earlier one prepared), which keeps the order of the bases but is no longer a
product of tetrahedral states: overlaps stop being (1/3)^Hamming and distinct k-mers can come close.

The template is read from lambeq's circuit into a gate list (quixer_rna.lambeq_sim) and evaluated for
all 4^k k-mers in one batch; the tests check it against lambeq's own evaluation. `--context stairs` uses
lambeq's stairs_reader composition: prefix state_t = STAIR(state_{t-1} (x) word_t), post-selected and
renormalised after every step (a whole 32-word stairs diagram post-selects away nearly all the norm).
"""

from __future__ import annotations

import logging
import math
import re
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .lambeq_sim import LambeqCircuit, LambeqGate, complex_dtype, simulate
from .errors import UserError
from .kmers import BASES, id_to_kmer
from .formats.embeddings import TABLE_FILE, TABLE_KMERS_FILE
from .formats.kmer_stream import KmerStream, StreamData
from .progress import Progress
from .runio import atomic_write_json
from .stage import stage_run

LOG = logging.getLogger("quixer_rna.encoding")

ANSATZE = ("IQP", "Sim14", "Sim15", "StronglyEntangling")
DEFAULT_ANSATZ = "Sim14"
DEFAULT_LAYERS = 1
READOUTS = ("probabilities", "amplitudes")
CONTEXTS = ("none", "stairs")
MAX_QUBITS = 14
# Tables of every k-mer up to 4^10 rows (256 MB at D = 64); longer k-mers get rows for the occurring ones only.
MAX_FULL_TABLE_ROWS = 4**10
MAX_TABLE_K = 12
ENCODING_SYMBOL = "enc"
DISTINCT_TOLERANCE = 1e-9
FLOAT32_DISTINCT_TOLERANCE = 1e-6  # a float32 (CUDA) table cannot resolve 1e-9

_TETRAHEDRON = {"A": (1, 1, 1), "C": (1, -1, -1), "G": (-1, 1, -1), "T": (-1, -1, 1)}
_INDEX_SUFFIX = re.compile(r"_(\d+)$")


def base_angles() -> torch.Tensor:
    """float64 [4, 2]: (Ry, Rz) phases in turns taking |0> to the tetrahedral state of A, C, G, T."""
    rows = []
    for base in BASES:
        x, y, z = (c / math.sqrt(3) for c in _TETRAHEDRON[base])
        rows.append((math.acos(z) / (2 * math.pi), math.atan2(y, x) / (2 * math.pi)))
    return torch.tensor(rows, dtype=torch.float64)


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


def symbol_index(name: str) -> int:
    """The number a lambeq symbol ends with: `x__s_10` -> 10 (sorting names would put _10 before _2)."""
    match = _INDEX_SUFFIX.search(name)
    if match is None:
        raise ValueError(f"symbol {name!r} has no _<index> suffix")
    return int(match.group(1))


# ---- lambeq side: circuits lambeq can evaluate ---------------------------------------------------------

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


def kmer_angles(kmer: str) -> list[float]:
    table = base_angles()
    return [float(v) for base in kmer for v in table[BASES.index(base)]]


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


def read_circuit(diagram: Any, param_of: Callable[[str], int]) -> LambeqCircuit:
    """lambeq circuit -> gate list. Wires are tracked through Kets and Bras, and qubits are relabelled so
    that the kept wires are 0..m-1 in lambeq's output order (post-selected qubits come after them)."""
    from lambeq.backend.quantum import Bra, Controlled, Gate as LambeqBoxGate, Ket, Rotation, Swap
    from lambeq.backend.symbol import Symbol

    wires = list(range(len(diagram.dom)))
    n_total = len(wires)
    gates: list[LambeqGate] = []
    post: dict[int, int] = {}
    removed: list[int] = []

    def phase_fields(phase: Any) -> dict[str, Any]:
        if isinstance(phase, Symbol):
            return {"param": param_of(phase.name), "scale": float(phase.scale)}
        return {"value": float(phase)}

    def fixed(box: Any) -> tuple:
        matrix = np.asarray(box.array, dtype=np.complex128).reshape(2, 2).T
        return tuple(tuple(complex(v) for v in row) for row in matrix)

    for layer in diagram.layers:
        box, offset = layer.box, len(layer.left)
        if isinstance(box, Ket):
            wires.insert(offset, n_total)
            if box.bit:
                gates.append(LambeqGate("fixed", n_total, matrix=((0, 1), (1, 0))))
            n_total += 1
        elif isinstance(box, Bra):
            qubit = wires.pop(offset)
            post[qubit] = box.bit
            removed.append(qubit)
        elif isinstance(box, Swap):
            gates.append(LambeqGate("swap", wires[offset], control=wires[offset + 1]))
        elif isinstance(box, Controlled):
            info = LambeqBoxGate.from_box(box, offset)
            inner = box.controlled
            if isinstance(inner, Controlled) or len(info.control) != 1:
                raise ValueError(f"unsupported multi-controlled gate {box.name}")
            target, control = wires[info.gate_q], wires[info.control[0]]
            if isinstance(inner, Rotation):
                gates.append(LambeqGate(type(inner).__name__.lower(), target, control=control, **phase_fields(inner.phase)))
            else:
                gates.append(LambeqGate("fixed", target, control=control, matrix=fixed(inner)))
        elif isinstance(box, Rotation):
            gates.append(LambeqGate(type(box).__name__.lower(), wires[offset], **phase_fields(box.phase)))
        elif len(box.dom) == 1 and len(box.cod) == 1 and not box.free_symbols:
            gates.append(LambeqGate("fixed", wires[offset], matrix=fixed(box)))
        else:
            raise ValueError(f"unsupported box {box.name!r} in a lambeq circuit")

    order = wires + removed
    relabel = {qubit: position for position, qubit in enumerate(order)}
    remapped = [
        LambeqGate(
            g.kind,
            relabel[g.target],
            control=None if g.control is None else relabel[g.control],
            param=g.param,
            scale=g.scale,
            value=g.value,
            matrix=g.matrix,
        )
        for g in gates
    ]
    return LambeqCircuit(n_total, remapped, {relabel[q]: bit for q, bit in post.items()})


# ---- the batched encoder ---------------------------------------------------------------------------------

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


# ---- the encode stage (lambeq_encoder.py) ----------------------------------------------------------------

def check_against_stream(args: Any, stream: StreamData) -> None:
    """Flags that repeat an upstream fact must agree with it (the k-mer stream's metadata.json)."""
    where = stream.folder / "metadata.json"
    if args.k is not None and args.k != stream.k:
        raise UserError(f"--k {args.k}: the k-mer stream in {stream.folder} holds {stream.k}-mers ({where}); "
                        "drop --k (it is read from there) or prepare the data again with that --k")
    if args.max_kmers is not None and stream.window_size > args.max_kmers:
        raise UserError(f"--max_kmers {args.max_kmers}: windows in {stream.folder} hold {stream.window_size} k-mers "
                        f"({where}); drop --max_kmers or raise it")


def table_kmers(stream: StreamData) -> np.ndarray | None:
    """None when every k-mer gets a table row; else the ids that occur in any split (k too large for all)."""
    if stream.k > MAX_TABLE_K:
        raise UserError(f"--k {stream.k} (from {stream.folder / 'metadata.json'}): k-mers longer than {MAX_TABLE_K} nt "
                        f"have more than 4^{MAX_TABLE_K} ids, too many to embed even the occurring ones; prepare the "
                        "data with a smaller --k")
    if 4**stream.k <= MAX_FULL_TABLE_ROWS:
        return None
    present = np.zeros(4**stream.k, dtype=bool)
    for split in stream.splits.values():
        for begin in range(0, len(split.kmers), 1 << 24):
            present[np.asarray(split.kmers[begin:begin + (1 << 24)], dtype=np.int64)] = True
    return np.flatnonzero(present)


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


def export_dense(path: Path, embeddings: Callable[[], np.ndarray]) -> None:
    """The seeds' per-window layout {embeddings [N, L, D], labels [N]} as a .pt file (an export)."""
    from .runio import atomic_torch_save

    values = torch.from_numpy(np.ascontiguousarray(embeddings()))
    atomic_torch_save({"embeddings": values, "labels": torch.zeros(values.shape[0], dtype=torch.int64)}, path)


def run_encode(args: Any) -> int:
    from .cli import resolve_device
    from .formats.embeddings import FORMAT, VERSION, WindowArrayWriter, save_npy, window_file
    from .formats.kmer_stream import open_stream_data, stream_reference

    n_qubits = qubits_for(args.embedding_dim, args.readout)
    device = resolve_device(args.device)
    dtype = torch.float64 if device.type == "cpu" else torch.float32
    timings: dict[str, float] = {}
    start = time.perf_counter()
    stream = open_stream_data(args.data_dir)
    check_against_stream(args, stream)
    k = stream.k
    if args.context == "stairs" and 4**k > MAX_FULL_TABLE_ROWS:
        raise UserError(f"--context stairs: needs every {k}-mer's state; use k <= {round(math.log(MAX_FULL_TABLE_ROWS, 4))}")
    rows = table_kmers(stream)
    timings["open_stream_s"] = time.perf_counter() - start
    with stage_run(args.output_dir, "lambeq_encoder", vars(args), role="encode", overwrite=args.overwrite) as run:
        output_dir = run.output_dir
        start = time.perf_counter()
        encoder = KmerEncoder.build(k, n_qubits, args.ansatz, args.layers, args.readout, args.seed,
                                    stairs=args.context == "stairs")
        timings["circuit_s"] = time.perf_counter() - start

        start = time.perf_counter()
        ids = torch.arange(4**k, device=device) if rows is None else torch.from_numpy(rows).to(device)
        states = encoder.states_of(ids, dtype)
        table = readout_of(states, args.readout)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        timings["table_build_s"] = time.perf_counter() - start
        tolerance = DISTINCT_TOLERANCE if dtype == torch.float64 else FLOAT32_DISTINCT_TOLERANCE
        distinct = count_distinct_rows(table, tolerance)
        table_cpu = table.float().cpu().numpy()
        LOG.info("table of %d k-mers x %d built in %.2f s; %d distinct rows", table.shape[0], table.shape[1],
                 timings["table_build_s"], distinct)

        start = time.perf_counter()
        files: dict[str, str] = {}
        windows = {name: split.num_windows for name, split in stream.splits.items()}
        if args.context == "stairs":
            for name, split in stream.splits.items():
                writer = WindowArrayWriter(window_file(output_dir, name), (split.num_windows, split.window_size,
                                                                            args.embedding_dim), np.float32)
                with Progress(split.num_windows, f"stairs {name}", unit="window", every=args.log_every) as progress:
                    contextual_embeddings(encoder, states, split, writer.array, args.workers, progress)
                files[window_file(output_dir, name).name] = writer.close()
        else:
            files[TABLE_FILE] = save_npy(output_dir / TABLE_FILE, table_cpu)
            if rows is not None:
                files[TABLE_KMERS_FILE] = save_npy(output_dir / TABLE_KMERS_FILE, rows)
        if args.dense:
            for name, split in stream.splits.items():
                if args.context == "stairs":
                    export_dense(output_dir / f"{name}.pt", lambda: np.load(window_file(output_dir, name), mmap_mode="r"))
                else:
                    export_dense(output_dir / f"{name}.pt", lambda: _table_rows(table_cpu, rows, split.windows(
                        np.arange(split.num_windows))))
        timings["write_s"] = time.perf_counter() - start

        try:
            lambeq_version = metadata.version("lambeq")
        except metadata.PackageNotFoundError:
            lambeq_version = None
        distinct_kmers = {name: int(np.count_nonzero(np.bincount(np.asarray(split.kmers, dtype=np.int64), minlength=1)))
                          for name, split in stream.splits.items()}
        info = {
            "format": FORMAT,
            "version": VERSION,
            "layout": "windows" if args.context == "stairs" else "table",
            "stage": "lambeq_encoder",
            "stream": stream_reference(stream, output_dir),
            "files": files,
            "lambeq_version": lambeq_version,
            "ansatz": args.ansatz,
            "qubits": n_qubits,
            "layers": args.layers,
            "readout": args.readout,
            "readout_layout": "probabilities |a_i|^2, i = basis index, qubit 0 most significant"
            if args.readout == "probabilities"
            else "[Re a_0 .. Re a_{2^n-1}, Im a_0 .. Im a_{2^n-1}], qubit 0 most significant",
            "context": args.context,
            "k": k,
            "embedding_dim": args.embedding_dim,
            "window_length": stream.window_size,
            "seed": args.seed,
            "device": str(device),
            "precision": str(dtype).replace("torch.", ""),
            "encoding": {
                "bases": "tetrahedral Bloch states A=(1,1,1) C=(1,-1,-1) G=(-1,1,-1) T=(-1,-1,1)/sqrt(3), Ry then Rz",
                "base_to_qubit": "base j on qubit j mod n",
                "bases_per_qubit": math.ceil(k / n_qubits),
                "angles_turns": {base: [float(v) for v in row] for base, row in zip(BASES, base_angles())},
            },
            "shared_weights": {
                "word": int(encoder.word_weights.numel()),
                "stair": int(encoder.stair_weights.numel()) if encoder.stair_weights is not None else 0,
                "distribution": "uniform in [0, 1) turns from torch.Generator seeded by --seed",
            },
            "windows": windows,
            "distinct_kmers": distinct_kmers,
            "table_rows": int(table.shape[0]),
            "table_holds": "every k-mer" if rows is None else "the k-mers that occur in any split",
            "distinct_embeddings": distinct,
            "distinct_tolerance": tolerance,
            "timings": {key: round(value, 4) for key, value in timings.items()},
            "data_dir": str(args.data_dir),
        }
        atomic_write_json(output_dir / "metadata.json", info)
        run.finish({**{key: info[key] for key in ("windows", "distinct_kmers", "distinct_embeddings", "qubits", "k")},
                    **timings})
    LOG.info("wrote %s: %s windows, %d distinct embeddings of %d k-mers", output_dir, windows, distinct, table.shape[0])
    return 0


def _table_rows(table: np.ndarray, rows: np.ndarray | None, ids: np.ndarray) -> np.ndarray:
    ids = ids.astype(np.int64)
    return table[ids if rows is None else np.searchsorted(rows, ids)]

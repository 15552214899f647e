"""The encode stage (lambeq_encoder.py), step by step: check the flags against the k-mer stream, build the
encoder, evaluate the table, write the embedding folder (quixer_rna.formats.embeddings), its optional dense
export and its metadata.json."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..cli import check_repeated, config_record, every, positive_int, resolve_device
from ..errors import UserError
from ..formats.embeddings import (
    TABLE_FILE,
    TABLE_KMERS_FILE,
    EmbeddingMetadata,
    WindowArrayWriter,
    save_npy,
    window_file,
)
from ..formats.kmer_stream import StreamData, open_stream_data, stream_reference
from ..kmers import BASES
from ..progress import Every, Progress
from ..stage import stage_run
from .circuits import ANSATZE, DEFAULT_ANSATZ, DEFAULT_LAYERS, base_angles
from .encoder import (
    DISTINCT_TOLERANCE,
    FLOAT32_DISTINCT_TOLERANCE,
    KmerEncoder,
    contextual_embeddings,
    count_distinct_rows,
    export_dense,
    READOUTS,
    qubits_for,
    readout_of,
    table_rows,
)

LOG = logging.getLogger("quixer_rna.encoding")

CONTEXTS = ("none", "stairs")
# Tables of every k-mer up to 4^10 rows (256 MB at D = 64); longer k-mers get rows for the occurring ones only.
MAX_FULL_TABLE_ROWS = 4**10
MAX_TABLE_K = 12


@dataclass(frozen=True)
class EncodeConfig:
    """Everything stage 3 needs, built once from its flags (field metadata: each flag's help and type)."""

    data_dir: str = field(metadata={"required": True,
                                    "help": "k-mer sentence folder written by prepare_autoregressive_data.py"})
    output_dir: str = field(metadata={"required": True, "help": "folder for {train,val,test}.pt and metadata.json"})
    k: int | None = field(default=None, metadata={
        "type": positive_int, "help": "k-mer length; read from --data_dir's metadata.json, an error when it differs"})
    max_kmers: int | None = field(default=None, metadata={
        "type": positive_int, "help": "most k-mers a window may hold; an error when --data_dir's windows are longer"})
    embedding_dim: int = field(default=64, metadata={
        "type": positive_int,
        "help": "length of the readout: 2^n probabilities of n qubits (64 -> 6 qubits), or 2 * 2^n amplitude parts "
                "with --readout amplitudes (128 -> 6 qubits); anything else is an error"})
    ansatz: str = field(default=DEFAULT_ANSATZ, metadata={
        "choices": ANSATZE,
        "help": "lambeq circuit ansatz of the shared layers. Sim14 (default, with 1 layer): Ry layers and two rings of "
                "controlled-Rx. Measured on all 4096 6-mers with probabilities (3 seeds): it kept the Hamming "
                "structure nearly as well as StronglyEntangling (Spearman 0.39-0.42 vs 0.44 between Hamming and "
                "state-distance) while keeping k-mers 5-10x further from their nearest neighbour (median 0.06-0.08 vs "
                "0.004-0.02), which the quantizer needs; more layers scramble the Hamming structure. IQP: Hadamards "
                "and CRz ladders; Sim15: Ry and CNOT rings; StronglyEntangling: Rz-Ry-Rz and CNOT rings"})
    layers: int = field(default=DEFAULT_LAYERS, metadata={"type": positive_int,
                                                          "help": "layers of the ansatz (shared by every k-mer)"})
    readout: str = field(default="probabilities", metadata={
        "choices": READOUTS,
        "help": "probabilities of the basis states, or real and imaginary parts of the amplitudes (amplitudes keep "
                "the exact state overlaps)"})
    context: str = field(default="none", metadata={
        "choices": CONTEXTS,
        "help": "'none': one embedding per k-mer (a table lookup); 'stairs': contextual embeddings from lambeq's "
                "stairs_reader composition (slow on CPU: 2n-qubit steps per position)"})
    workers: int = field(default=1, metadata={
        "type": positive_int,
        "help": "processes for the window chunks of --context stairs on CPU. The table itself is one batch (torch "
                "threads: OMP_NUM_THREADS); never a process per k-mer"})
    dense: bool = field(default=False, metadata={
        "help": "also export the seeds' per-window layout {split}.pt with embeddings [N, L, D]"})
    log_every: Every = field(default=Every(seconds=60), metadata={
        "type": every, "help": "without a terminal, log progress every N windows or every Ns seconds"})
    seed: int = 0
    device: str = "auto"
    overwrite: bool = False


@dataclass
class KmerTable:
    """The embedding table as this run computed it: what the folder's files and metadata.json are written from."""

    kmers: np.ndarray | None  # the k-mer id of each row; None: every k-mer, in id order
    states: torch.Tensor  # amplitudes [R, 2^n] on the device (what the stairs context composes)
    values: np.ndarray  # float32 [R, D] on the CPU: the table written
    distinct: int  # rows that differ by more than `tolerance`
    tolerance: float  # DISTINCT_TOLERANCE, or FLOAT32_DISTINCT_TOLERANCE for a float32 (CUDA) table


def check_against_stream(config: EncodeConfig, stream: StreamData) -> None:
    """The seeds' --k and --max_kmers repeat facts of the k-mer stream: they must agree with it."""
    where = stream.folder / "metadata.json"
    check_repeated("k", config.k, stream.k, f"the k-mer stream in {stream.folder} holds {stream.k}-mers", where)
    check_repeated("max_kmers", config.max_kmers, stream.window_size,
                   f"windows in {stream.folder} hold {stream.window_size} k-mers", where, at_most=True)


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
        present |= split.present()
    return np.flatnonzero(present)


def open_input(config: EncodeConfig) -> tuple[StreamData, np.ndarray | None]:
    """The k-mer stream of --data_dir, checked against the flags, and the k-mers the table holds (None: all)."""
    stream = open_stream_data(config.data_dir)
    check_against_stream(config, stream)
    k = stream.k
    if config.context == "stairs" and 4**k > MAX_FULL_TABLE_ROWS:
        raise UserError(f"--context stairs: needs every {k}-mer's state; use k <= {round(math.log(MAX_FULL_TABLE_ROWS, 4))}")
    return stream, table_kmers(stream)


def evaluate_table(encoder: KmerEncoder, kmers: np.ndarray | None, device: torch.device,
                   dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """States [R, 2^n] and readouts [R, D] of the table's k-mers, on `device`, finished when it returns."""
    ids = torch.arange(4**encoder.k, device=device) if kmers is None else torch.from_numpy(kmers).to(device)
    states = encoder.states_of(ids, dtype)
    table = readout_of(states, encoder.readout)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return states, table


def write_embeddings(config: EncodeConfig, encoder: KmerEncoder, stream: StreamData, table: KmerTable,
                     output_dir: Path) -> dict[str, str]:
    """The folder's embedding files, name -> sha256: the table (and its k-mer ids when it holds only some),
    or with --context stairs one array of contextual embeddings per split."""
    files: dict[str, str] = {}
    if config.context == "stairs":
        for name, split in stream.splits.items():
            writer = WindowArrayWriter(window_file(output_dir, name), (split.num_windows, split.window_size,
                                                                        config.embedding_dim), np.float32)
            with Progress(split.num_windows, f"stairs {name}", unit="window", every=config.log_every) as progress:
                contextual_embeddings(encoder, table.states, split, writer.array, config.workers, progress)
            files[window_file(output_dir, name).name] = writer.close()
    else:
        files[TABLE_FILE] = save_npy(output_dir / TABLE_FILE, table.values)
        if table.kmers is not None:
            files[TABLE_KMERS_FILE] = save_npy(output_dir / TABLE_KMERS_FILE, table.kmers)
    return files


def export_dense_splits(context: str, stream: StreamData, table: KmerTable, output_dir: Path) -> None:
    """--dense: every split's windows as {split}.pt, read back from the window arrays or looked up in the table."""
    for name, split in stream.splits.items():
        if context == "stairs":
            export_dense(output_dir / f"{name}.pt", lambda: np.load(window_file(output_dir, name), mmap_mode="r"))
        else:
            export_dense(output_dir / f"{name}.pt", lambda: table_rows(table.values, table.kmers, split.windows(
                np.arange(split.num_windows))))


def distinct_kmers(stream: StreamData) -> dict[str, int]:
    """How many different k-mers each split holds."""
    return {name: int(np.count_nonzero(split.present())) for name, split in stream.splits.items()}


def lambeq_version() -> str | None:
    try:
        return metadata.version("lambeq")
    except metadata.PackageNotFoundError:
        return None


def embeddings_metadata(config: EncodeConfig, stream: StreamData, output_dir: Path, encoder: KmerEncoder,
                        table: KmerTable, files: dict[str, str], device: torch.device, dtype: torch.dtype,
                        timings: dict[str, float]) -> EmbeddingMetadata:
    """The folder's metadata.json (quixer_rna.formats.embeddings reads it)."""
    k, n_qubits = stream.k, encoder.n_qubits
    return EmbeddingMetadata(
        layout="windows" if config.context == "stairs" else "table",
        stage="lambeq_encoder",
        stream=stream_reference(stream, output_dir),
        files=files,
        lambeq_version=lambeq_version(),
        ansatz=config.ansatz,
        qubits=n_qubits,
        layers=config.layers,
        readout=config.readout,
        readout_layout="probabilities |a_i|^2, i = basis index, qubit 0 most significant"
        if config.readout == "probabilities"
        else "[Re a_0 .. Re a_{2^n-1}, Im a_0 .. Im a_{2^n-1}], qubit 0 most significant",
        context=config.context,
        k=k,
        embedding_dim=config.embedding_dim,
        window_size=stream.window_size,
        seed=config.seed,
        device=str(device),
        precision=str(dtype).replace("torch.", ""),
        encoding={
            "bases": "tetrahedral Bloch states A=(1,1,1) C=(1,-1,-1) G=(-1,1,-1) T=(-1,-1,1)/sqrt(3), Ry then Rz",
            "base_to_qubit": "base j on qubit j mod n",
            "bases_per_qubit": math.ceil(k / n_qubits),
            "angles_turns": {base: [float(v) for v in row] for base, row in zip(BASES, base_angles())},
        },
        shared_weights={
            "word": int(encoder.word_weights.numel()),
            "stair": int(encoder.stair_weights.numel()) if encoder.stair_weights is not None else 0,
            "distribution": "uniform in [0, 1) turns from torch.Generator seeded by --seed",
        },
        windows={name: split.num_windows for name, split in stream.splits.items()},
        distinct_kmers=distinct_kmers(stream),
        table_rows=int(table.values.shape[0]),
        table_holds="every k-mer" if table.kmers is None else "the k-mers that occur in any split",
        distinct_embeddings=table.distinct,
        distinct_tolerance=table.tolerance,
        timings={key: round(value, 4) for key, value in timings.items()},
        data_dir=str(config.data_dir),
    )


@contextlib.contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Record the seconds the block took as timings[key]."""
    start = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - start


def run_encode(config: EncodeConfig) -> int:
    """lambeq_encoder.py: every flag is checked against the stream before the output folder is claimed."""
    n_qubits = qubits_for(config.embedding_dim, config.readout)
    device = resolve_device(config.device)
    dtype = torch.float64 if device.type == "cpu" else torch.float32
    timings: dict[str, float] = {}
    with _timed(timings, "open_stream_s"):
        stream, kmers = open_input(config)
    with stage_run(config.output_dir, "lambeq_encoder", config_record(config), role="encode",
                   overwrite=config.overwrite) as run:
        output_dir = run.output_dir
        with _timed(timings, "circuit_s"):
            encoder = KmerEncoder.build(stream.k, n_qubits, config.ansatz, config.layers, config.readout, config.seed,
                                        stairs=config.context == "stairs")
        with _timed(timings, "table_build_s"):
            states, readouts = evaluate_table(encoder, kmers, device, dtype)
        tolerance = DISTINCT_TOLERANCE if dtype == torch.float64 else FLOAT32_DISTINCT_TOLERANCE
        table = KmerTable(kmers, states, readouts.float().cpu().numpy(), count_distinct_rows(readouts, tolerance),
                          tolerance)
        LOG.info("table of %d k-mers x %d built in %.2f s; %d distinct rows", readouts.shape[0], readouts.shape[1],
                 timings["table_build_s"], table.distinct)

        with _timed(timings, "write_s"):
            files = write_embeddings(config, encoder, stream, table, output_dir)
            if config.dense:
                export_dense_splits(config.context, stream, table, output_dir)

        info = embeddings_metadata(config, stream, output_dir, encoder, table, files, device, dtype, timings)
        info.write(output_dir)
        run.finish({"windows": info.windows, "distinct_kmers": info.distinct_kmers,
                    "distinct_embeddings": info.distinct_embeddings, "qubits": info.qubits, "k": info.k, **timings})
    LOG.info("wrote %s: %s windows, %d distinct embeddings of %d k-mers", output_dir, info.windows, table.distinct,
             table.values.shape[0])
    return 0

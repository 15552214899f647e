"""The encode stage (lambeq_encoder.py), step by step: check the flags against the k-mer stream, build the
encoder, evaluate the table, write the embedding folder (quixer_rna.formats.embeddings), its optional dense
export and its metadata.json."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ..cli import resolve_device
from ..errors import UserError
from ..formats.embeddings import (
    FORMAT,
    METADATA_FILE,
    TABLE_FILE,
    TABLE_KMERS_FILE,
    VERSION,
    WindowArrayWriter,
    save_npy,
    window_file,
)
from ..formats.kmer_stream import StreamData, open_stream_data, stream_reference
from ..kmers import BASES
from ..progress import Progress
from ..runio import atomic_write_json
from ..stage import stage_run
from .circuits import base_angles
from .encoder import (
    DISTINCT_TOLERANCE,
    FLOAT32_DISTINCT_TOLERANCE,
    KmerEncoder,
    contextual_embeddings,
    count_distinct_rows,
    export_dense,
    qubits_for,
    readout_of,
    table_rows,
)

LOG = logging.getLogger("quixer_rna.encoding")

CONTEXTS = ("none", "stairs")
# Tables of every k-mer up to 4^10 rows (256 MB at D = 64); longer k-mers get rows for the occurring ones only.
MAX_FULL_TABLE_ROWS = 4**10
MAX_TABLE_K = 12


@dataclass
class KmerTable:
    """The embedding table as this run computed it: what the folder's files and metadata.json are written from."""

    kmers: np.ndarray | None  # the k-mer id of each row; None: every k-mer, in id order
    states: torch.Tensor  # amplitudes [R, 2^n] on the device (what the stairs context composes)
    values: np.ndarray  # float32 [R, D] on the CPU: the table written
    distinct: int  # rows that differ by more than `tolerance`
    tolerance: float  # DISTINCT_TOLERANCE, or FLOAT32_DISTINCT_TOLERANCE for a float32 (CUDA) table


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


def open_input(args: Any) -> tuple[StreamData, np.ndarray | None]:
    """The k-mer stream of --data_dir, checked against the flags, and the k-mers the table holds (None: all)."""
    stream = open_stream_data(args.data_dir)
    check_against_stream(args, stream)
    k = stream.k
    if args.context == "stairs" and 4**k > MAX_FULL_TABLE_ROWS:
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


def write_embeddings(args: Any, encoder: KmerEncoder, stream: StreamData, table: KmerTable,
                     output_dir: Path) -> dict[str, str]:
    """The folder's embedding files, name -> sha256: the table (and its k-mer ids when it holds only some),
    or with --context stairs one array of contextual embeddings per split."""
    files: dict[str, str] = {}
    if args.context == "stairs":
        for name, split in stream.splits.items():
            writer = WindowArrayWriter(window_file(output_dir, name), (split.num_windows, split.window_size,
                                                                        args.embedding_dim), np.float32)
            with Progress(split.num_windows, f"stairs {name}", unit="window", every=args.log_every) as progress:
                contextual_embeddings(encoder, table.states, split, writer.array, args.workers, progress)
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
    return {name: int(np.count_nonzero(np.bincount(np.asarray(split.kmers, dtype=np.int64), minlength=1)))
            for name, split in stream.splits.items()}


def lambeq_version() -> str | None:
    try:
        return metadata.version("lambeq")
    except metadata.PackageNotFoundError:
        return None


def embeddings_metadata(args: Any, stream: StreamData, output_dir: Path, encoder: KmerEncoder, table: KmerTable,
                        files: dict[str, str], device: torch.device, dtype: torch.dtype,
                        timings: dict[str, float]) -> dict[str, Any]:
    """The folder's metadata.json (quixer_rna.formats.embeddings reads it)."""
    k, n_qubits = stream.k, encoder.n_qubits
    return {
        "format": FORMAT,
        "version": VERSION,
        "layout": "windows" if args.context == "stairs" else "table",
        "stage": "lambeq_encoder",
        "stream": stream_reference(stream, output_dir),
        "files": files,
        "lambeq_version": lambeq_version(),
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
        "windows": {name: split.num_windows for name, split in stream.splits.items()},
        "distinct_kmers": distinct_kmers(stream),
        "table_rows": int(table.values.shape[0]),
        "table_holds": "every k-mer" if table.kmers is None else "the k-mers that occur in any split",
        "distinct_embeddings": table.distinct,
        "distinct_tolerance": table.tolerance,
        "timings": {key: round(value, 4) for key, value in timings.items()},
        "data_dir": str(args.data_dir),
    }


@contextlib.contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Record the seconds the block took as timings[key]."""
    start = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - start


def run_encode(args: Any) -> int:
    """lambeq_encoder.py: every flag is checked against the stream before the output folder is claimed."""
    n_qubits = qubits_for(args.embedding_dim, args.readout)
    device = resolve_device(args.device)
    dtype = torch.float64 if device.type == "cpu" else torch.float32
    timings: dict[str, float] = {}
    with _timed(timings, "open_stream_s"):
        stream, kmers = open_input(args)
    with stage_run(args.output_dir, "lambeq_encoder", vars(args), role="encode", overwrite=args.overwrite) as run:
        output_dir = run.output_dir
        with _timed(timings, "circuit_s"):
            encoder = KmerEncoder.build(stream.k, n_qubits, args.ansatz, args.layers, args.readout, args.seed,
                                        stairs=args.context == "stairs")
        with _timed(timings, "table_build_s"):
            states, readouts = evaluate_table(encoder, kmers, device, dtype)
        tolerance = DISTINCT_TOLERANCE if dtype == torch.float64 else FLOAT32_DISTINCT_TOLERANCE
        table = KmerTable(kmers, states, readouts.float().cpu().numpy(), count_distinct_rows(readouts, tolerance),
                          tolerance)
        LOG.info("table of %d k-mers x %d built in %.2f s; %d distinct rows", readouts.shape[0], readouts.shape[1],
                 timings["table_build_s"], table.distinct)

        with _timed(timings, "write_s"):
            files = write_embeddings(args, encoder, stream, table, output_dir)
            if args.dense:
                export_dense_splits(args.context, stream, table, output_dir)

        info = embeddings_metadata(args, stream, output_dir, encoder, table, files, device, dtype, timings)
        atomic_write_json(output_dir / METADATA_FILE, info)
        run.finish({**{key: info[key] for key in ("windows", "distinct_kmers", "distinct_embeddings", "qubits", "k")},
                    **timings})
    LOG.info("wrote %s: %s windows, %d distinct embeddings of %d k-mers", output_dir, info["windows"], table.distinct,
             table.values.shape[0])
    return 0

"""Strict readers of what other stages wrote: the prepare stage's metadata.json and leak.tsv, the tokenizer
stages' metadata (each through its format's dataclass, quixer_rna.formats), the study's timings.json. A key
the report needs and does not find is a one-line UserError naming the file and the key, so a renamed key
stops the report instead of printing "-".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..formats import SPLITS
from ..formats.embeddings import EmbeddingMetadata
from ..formats.kmer_stream import LEAK_FILE, StreamMetadata, read_leak_table
from ..formats.metadata import METADATA_FILE
from ..formats.tokens import TokenMetadata
from ..runio import read_json
from .collect import StageRecord
from .records import Dataset, Leak, LeakGene, LeakSplit, SplitCounts, StageTime, Timings, Tokenizer
from .strict import Strict, require

TIMINGS_FILE = "timings.json"
LEAK_GENES_SHOWN = 10


# ---- the data set -----------------------------------------------------------------------------------------------

def _leak(leak: Strict) -> Leak:
    if not leak.flag("computed"):
        return Leak(False, leak.text("reason"), leak.integer("length"), leak.number("threshold"), False)
    splits = []
    for split in ("val", "test"):
        part = leak.sub(split)
        splits.append(LeakSplit(split, part.number("share"), part.integer("queries"), part.integer("shared"),
                                part.integer("transcripts"), part.integer("transcripts_over_half_shared")))
    return Leak(True, None, leak.integer("length"), leak.number("threshold"), leak.flag("above_threshold"),
                tuple(splits))


def leak_genes(folder: Path, shown: int = LEAK_GENES_SHOWN) -> tuple[LeakGene, ...]:
    """The test genes with the largest share of their L-mers found in train (leak.tsv summed per gene)."""
    table = read_leak_table(folder).get("test")
    if table is None:
        raise UserError(f"{folder / LEAK_FILE}: missing or without test rows, though metadata.json says the leak "
                        "figure was computed; rerun prepare_autoregressive_data.py")
    names, index = np.unique(table["gene"].astype(str), return_inverse=True)
    queries = np.bincount(index, weights=table["queries"], minlength=len(names))
    shared = np.bincount(index, weights=table["shared"], minlength=len(names))
    transcripts = np.bincount(index, minlength=len(names))
    share = np.divide(shared, queries, out=np.zeros_like(shared), where=queries > 0)
    order = [i for i in np.lexsort((-shared, -share)) if shared[i] > 0][:shown]
    return tuple(LeakGene(str(names[i]), int(transcripts[i]), int(queries[i]), int(shared[i]), float(share[i]))
                 for i in order)


def read_dataset(prepare: StageRecord, runs_dir: Path) -> Dataset:
    """The prepare stage's metadata.json (and leak.tsv) as the report shows them."""
    path = prepare.folder / METADATA_FILE
    meta = StreamMetadata.read(prepare.folder)
    require(meta, path, "synthetic", "sequences", "genes", "windows", "split_by", "split_rule", "min_length", "skipped",
            "gene_sources", "leak")
    for split in SPLITS:
        require(meta.splits[split], path, "genes", "windows", where=f"splits.{split}.")
    sources = Strict(meta.gene_sources, path, "gene_sources.")
    counts = tuple(SplitCounts(split, meta.splits[split].transcripts, meta.splits[split].genes,
                               meta.splits[split].windows, sources.counts(split)) for split in SPLITS)
    leak = _leak(Strict(meta.leak, path, "leak."))
    return Dataset(
        folder=prepare.folder.relative_to(runs_dir).as_posix(), synthetic=meta.synthetic, transcripts=meta.sequences,
        genes=meta.genes, windows=meta.windows, splits=counts, k=meta.k, stride=meta.stride,
        window_size=meta.window_size, window_step=meta.window_step, split_by=meta.split_by,
        split_rule=meta.split_rule, min_length=meta.min_length, skipped=meta.skipped, leak=leak,
        leak_genes=leak_genes(prepare.folder) if leak.computed else (),
        total_nucleotides=meta.total_nucleotides, soft_masked=meta.soft_masked,
        soft_masked_bases=meta.soft_masked_bases, bases_left_out=meta.bases_left_out,
    )


# ---- tokenizer, timings, synthetic ------------------------------------------------------------------------------

def read_tokenizer(quantize: StageRecord | None, encode: StageRecord | None) -> Tokenizer:
    """The cluster tokens' metadata (quantize) and the encoder's (encode), of completed stages."""
    found: dict[str, Any] = {}
    if quantize is not None and quantize.status == "completed":
        tokens = TokenMetadata.read(quantize.folder)
        path = quantize.folder / METADATA_FILE
        require(tokens, path, "n_clusters", "token_entropy_bits", "inertia")
        if tokens.kind == "kmer_map":  # per-window tokens have no k-mer map to measure the Hamming share of
            require(tokens, path, "hamming_neighbour_share", "hamming_neighbour_share_shuffled")
        found.update(clusters=tokens.n_clusters, entropy_bits=tokens.token_entropy_bits, inertia=tokens.inertia,
                     hamming_share=tokens.hamming_neighbour_share,
                     hamming_share_shuffled=tokens.hamming_neighbour_share_shuffled)
    if encode is not None and encode.status == "completed":
        embeddings = EmbeddingMetadata.read(encode.folder)
        require(embeddings, encode.folder / METADATA_FILE, "lambeq_version", "ansatz", "layers", "qubits", "readout",
                "context", "distinct_embeddings")
        found.update(encoder=f"lambeq {embeddings.lambeq_version}, {embeddings.ansatz} x {embeddings.layers}, "
                             f"{embeddings.qubits} qubits, {embeddings.readout}, context {embeddings.context}",
                     distinct_embeddings=embeddings.distinct_embeddings)
    return Tokenizer(**found)


def read_timings(runs_dir: Path) -> Timings | None:
    """timings.json of a study run by run_pipeline.sh (None for a folder the pipeline did not make)."""
    path = runs_dir / TIMINGS_FILE
    if not path.is_file():
        return None
    timings = Strict(read_json(path, "timings"), path)
    entries = timings["stages"]
    if not isinstance(entries, list):
        raise UserError(f"{path}: 'stages' is not a list; rerun run_pipeline.sh")
    stages = []
    for i, entry in enumerate(entries):
        entry = Strict(entry, path, f"stages.{i}.")
        stages.append(StageTime(entry.text("stage"), entry.text("status"), entry.number("seconds")))
    return Timings(dict(timings.sub("settings").data), tuple(stages))


def is_synthetic(stages: list[StageRecord], dataset: Dataset | None) -> bool:
    """Whether the study's transcripts were generated offline: the prepare stage says so, or a download stage
    was run with --source synthetic."""
    if dataset is not None and dataset.synthetic:
        return True
    return any(Strict(s.args, s.path, "args.").text("source").lower() == "synthetic"
               for s in stages if s.role == "download")

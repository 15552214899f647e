"""k-mer sentences -> raw k-mer token files, the classical baselines' input with no quantum encoding.

Every k-mer is its own token and its id is fixed by the k-mer alone (quixer_rna.kmers: base-4 digits,
A=0 C=1 G=2 T=3), never by frequency or by which k-mers happen to occur, so the same k-mer has the
same id in every split, run and data set, and vocab_size is always 4^k.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch
from tqdm import tqdm

from .errors import UserError
from .formats import SPLITS
from .formats.sentences import SentenceSplit, load_sentence_dataset, read_metadata
from .formats.tokens import save_token_split
from .kmers import kmer_to_id
from .runio import RunRecord, atomic_write_json, prepare_output_dir

LOG = logging.getLogger(__name__)

VOCAB_FILE = "vocab.json"
METADATA_FILE = "metadata.json"
ID_RULE = "id = k-mer read as a base-4 number, A=0 C=1 G=2 T=3, first base most significant (quixer_rna.kmers)"


def split_to_ids(split: SentenceSplit, path: Path, ids: dict[str, int]) -> torch.Tensor:
    """Token ids [N, L] of one split's windows (read from `path`); `ids` caches every k-mer
    converted so far (and so ends up holding the k-mers seen)."""
    rows = []
    for window in tqdm(split.kmers, desc=f"{path.parent.name} windows", unit="win", leave=False, disable=None):
        row = []
        for kmer in window:
            value = ids.get(kmer)
            if value is None:
                value = ids[kmer] = kmer_to_id(kmer)
            row.append(value)
        rows.append(row)
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise UserError(f"{path}: windows of different lengths {sorted(widths)}; rerun prepare_autoregressive_data.py")
    return torch.tensor(rows, dtype=torch.int64).reshape(len(rows), widths.pop() if widths else 0)


def _infer_k(data_dir: Path, dataset: dict[str, SentenceSplit]) -> int:
    for split in dataset.values():
        if split.kmers:
            return len(split.kmers[0][0])
    raise UserError(f"--data_dir {data_dir}: every split is empty; rerun prepare_autoregressive_data.py")


def run_prepare_classical(args: argparse.Namespace) -> int:
    """The stage: read the sentences, write {train,val,test}.pt, vocab.json and metadata.json."""
    started = time.perf_counter()
    data_dir = Path(args.data_dir)
    sentence_metadata = read_metadata(data_dir)
    output_dir = prepare_output_dir(args.output_dir, args.overwrite)
    record = RunRecord(output_dir, "prepare_classical_benchmarks", vars(args))
    k_meta = sentence_metadata.get("k")
    dataset = load_sentence_dataset(data_dir, k=int(k_meta) if k_meta else None)
    k = int(k_meta) if k_meta else _infer_k(data_dir, dataset)
    vocab_size = 4**k
    counts: dict[str, dict[str, int]] = {}
    ids: dict[str, int] = {}
    window_length = None
    for name in SPLITS:
        split = dataset[name]
        if len(split) == 0:
            raise UserError(f"{data_dir / name / 'sentences.txt'}: no windows; rerun prepare_autoregressive_data.py")
        sequences = split_to_ids(split, data_dir / name / "sentences.txt", ids)
        if window_length is not None and sequences.shape[1] != window_length:
            raise UserError(f"--data_dir {data_dir}: split {name} has windows of {sequences.shape[1]} k-mers, others {window_length}")
        window_length = int(sequences.shape[1])
        save_token_split(output_dir / f"{name}.pt", sequences, vocab_size, labels=torch.tensor(split.labels), sources=split.sources)
        distinct = torch.unique(sequences)
        counts[name] = {"windows": len(split), "sources": len(set(split.sources)), "distinct_kmers": int(distinct.numel())}
        LOG.info("%s: %d windows, %d distinct k-mers", name, len(split), distinct.numel())
    vocab = {
        "k": k,
        "vocab_size": vocab_size,
        "rule": ID_RULE,
        "seen_kmers": len(ids),
        "id_to_kmer": {str(i): kmer for kmer, i in sorted(ids.items(), key=lambda item: item[1])},
    }
    atomic_write_json(output_dir / VOCAB_FILE, vocab)
    metadata = {
        "tokenizer": "raw k-mers",
        "k": k,
        "vocab_size": vocab_size,
        "window_length": window_length,
        "seen_kmers": len(ids),
        "splits": counts,
        "rule": ID_RULE,
        "sentences_dir": str(data_dir.resolve()),
        "sentences_metadata": sentence_metadata,
    }
    atomic_write_json(output_dir / METADATA_FILE, metadata)
    record.finish({**{f"{s}_windows": counts[s]["windows"] for s in SPLITS}, "vocab_size": vocab_size,
                   "seen_kmers": len(ids), "seconds": round(time.perf_counter() - started, 3)})
    return 0


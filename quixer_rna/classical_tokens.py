"""k-mer stream -> raw k-mer tokens, the classical baselines' input with no quantum encoding.

Every k-mer is its own token and its id is fixed by the k-mer alone (quixer_rna.kmers: base-4 digits,
A=0 C=1 G=2 T=3), never by frequency or by which k-mers happen to occur, so the same k-mer has the same
id in every split, run and data set, and vocab_size is always 4^k. The token folder is the identity map
over the stream: it stores no windows and no map, only metadata.json (and vocab.json for people).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from .cli import config_record
from .formats.kmer_stream import open_stream_data, stream_reference
from .formats.tokens import TokenMetadata
from .kmers import id_to_kmer
from .quantization import export_token_pt
from .runio import atomic_write_json
from .stage import stage_run

LOG = logging.getLogger(__name__)

VOCAB_FILE = "vocab.json"
ID_RULE = "id = k-mer read as a base-4 number, A=0 C=1 G=2 T=3, first base most significant (quixer_rna.kmers)"


@dataclass(frozen=True)
class RawTokensConfig:
    """Everything the raw-token stage needs, built once from its flags (field metadata: each flag's help)."""

    data_dir: str = field(metadata={
        "required": True, "help": "output folder of prepare_autoregressive_data.py (k-mer streams)"})
    output_dir: str = field(metadata={"required": True, "help": "folder for metadata.json and vocab.json"})
    write_pt: bool = field(default=False, metadata={
        "help": "also export the seeds' {split}.pt token files (sequences [N, L]); no stage reads them"})
    seed: int = 0
    overwrite: bool = False


def run_prepare_classical(config: RawTokensConfig) -> int:
    """The stage: read the stream's metadata, write metadata.json and vocab.json (and the seeds' export)."""
    started = time.perf_counter()
    stream = open_stream_data(config.data_dir)
    k = stream.k
    with stage_run(config.output_dir, "prepare_classical_benchmarks", config_record(config), role="raw_tokens",
                   overwrite=config.overwrite) as run:
        output_dir = run.output_dir
        seen = np.zeros(4**k, dtype=bool)
        counts = {}
        for name, split in stream.splits.items():
            present = split.present()
            seen |= present
            distinct = int(np.count_nonzero(present))
            counts[name] = {"windows": split.num_windows, "transcripts": len(split.transcripts),
                            "distinct_kmers": distinct}
            LOG.info("%s: %d windows, %d distinct k-mers", name, split.num_windows, distinct)
        seen_ids = np.flatnonzero(seen)
        atomic_write_json(output_dir / VOCAB_FILE, {
            "k": k,
            "vocab_size": 4**k,
            "rule": ID_RULE,
            "seen_kmers": int(seen_ids.size),
            "id_to_kmer": {str(i): id_to_kmer(int(i), k) for i in seen_ids.tolist()},
        })
        TokenMetadata(tokenizer="raw k-mers", kind="identity", vocab_size=4**k, k=k, window_size=stream.window_size,
                      stream=stream_reference(stream, output_dir), files={}, seen_kmers=int(seen_ids.size),
                      splits=counts, rule=ID_RULE).write(output_dir)
        if config.write_pt:
            export_token_pt(output_dir)
        run.finish({**{f"{s}_windows": c["windows"] for s, c in counts.items()}, "vocab_size": 4**k,
                    "seen_kmers": int(seen_ids.size), "seconds": round(time.perf_counter() - started, 3)})
    return 0

"""Stage 2's settings: PrepareConfig (every flag of prepare_autoregressive_data.py, with its help and type) and the
checks of flag combinations that can never work."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..cli import every, nonnegative_int, open_fraction, positive_int, rate
from ..errors import UserError
from ..formats.kmer_stream import kmer_dtype
from ..progress import Every
from ..sequence import SOFT_MASKED

SPLIT_BY = ("gene", "family", "transcript", "region")


@dataclass(frozen=True)
class PrepareConfig:
    """Everything stage 2 needs, built once from its flags (field metadata: each flag's help and type)."""

    fasta: tuple[str, ...] = field(default=(), metadata={
        "nargs": "+", "required": True, "metavar": "FILE",
        "help": "one or more FASTA files, plain or gzip; repeat the flag or list several"})
    output_dir: str = field(default="", metadata={"required": True,
                                                  "help": "folder for the k-mer streams and metadata.json"})
    k: int = field(default=6, metadata={"type": positive_int, "help": "k-mer length in nucleotides"})
    window_size: int = field(default=32, metadata={
        "type": positive_int, "help": "k-mers per window: window_size-1 of context, then the target"})
    min_length: int = field(default=200, metadata={
        "type": nonnegative_int,
        "help": "skip (and count) transcripts, and with --split_by region blocks, shorter than this many nucleotides"})
    stride: int | None = field(default=None, metadata={
        "type": positive_int,
        "help": "nucleotides between k-mer starts; default k (non-overlapping k-mers), 1 overlaps them"})
    window_step: int = field(default=1, metadata={
        "type": positive_int,
        "help": "k-mers between window starts; 1 makes every k-mer after the first window_size-1 of a transcript a "
                "target exactly once, window_size gives disjoint windows"})
    val_fraction: float = field(default=0.1, metadata={"type": open_fraction, "help": "fraction of windows for validation"})
    test_fraction: float = field(default=0.1, metadata={"type": open_fraction, "help": "fraction of windows for test"})
    split_by: str = field(default="gene", metadata={
        "choices": SPLIT_BY,
        "help": "what one split keeps whole: 'gene' (isoforms; transcripts whose header names no gene are grouped by "
                "--gene_map, overlapping locus or shared sequence), 'family' (also transcripts of different genes "
                "sharing sequence), 'transcript' (leaky: only to measure the leak), 'region' (blocks of a chromosome "
                "or genome)"})
    gene_map: str | None = field(default=None, metadata={
        "metavar": "TSV",
        "help": "table of transcript id (the FASTA header's first word, version optional) and gene, tab-separated; "
                "it names genes before the headers do; transcripts missing from it fall back to the header, locus "
                "or shared sequence (counted in metadata.json)"})
    gene_map_column: str = field(default="auto", metadata={
        "help": "the --gene_map column holding the gene: a header-row name, or 'auto' (a column named gene, "
                "gene_id, entrez_gene_id, gene_symbol, symbol or gene_name, else the second)"})
    family_min_run: int = field(default=48, metadata={
        "type": positive_int,
        "help": "shared sequence counts in identical runs of at least this many nucleotides (grouping by sequence)"})
    family_min_anchors: int = field(default=4, metadata={
        "type": positive_int,
        "help": "transcripts are grouped when they share at least this many sequence anchors (about "
                "family_min_run + 9 x (anchors - 1) shared nucleotides at the defaults): one shared repeat copy "
                "does not join two genes, shared exons do"})
    block_size: int = field(default=100_000, metadata={
        "type": positive_int,
        "help": "--split_by region: nucleotides per block; 100 kb keeps most genes (median ~24 kb in the genome) "
                "inside one block while a chromosome still gives hundreds of blocks to shuffle"})
    soft_masked: str = field(default="keep", metadata={
        "choices": SOFT_MASKED,
        "help": "lowercase (soft-masked repeat) bases: 'keep' reads them as bases, 'drop' ends a stretch at them "
                "as at N (about half of a UCSC/Ensembl genome)"})
    leak_length: int = field(default=24, metadata={
        "type": positive_int,
        "help": "the leak figure looks up val and test sequences of this many nucleotides (at most 32) in train"})
    leak_threshold: float = field(default=0.02, metadata={
        "type": rate,
        "help": "warn when more than this share of val or test leak_length-mers occurs in train (clean real "
                "splits measure about 0.4%%; isoforms split apart 17%% or more)"})
    write_sentences: bool = field(default=False, metadata={
        "help": "also write the seeds' layout, {split}/sentences.txt (one window of k-mers a line), labels.txt and "
                "sources.txt, for people who read it; no stage reads it (at full scale it is ~35x the FASTA)"})
    log_every: Every = field(default=Every(seconds=60), metadata={
        "type": every, "help": "without a terminal, log progress every N records or every Ns seconds"})
    seed: int = 0
    overwrite: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "fasta", tuple(self.fasta))
        if self.stride is None:
            object.__setattr__(self, "stride", self.k)


def window_span(k: int, stride: int, window_size: int) -> int:
    """Nucleotides one window covers."""
    return (window_size - 1) * stride + k


def check_config(config: PrepareConfig) -> None:
    """Flag combinations that can never work, each named in a one-line error (single values are checked by their
    argparse types)."""
    if config.window_size < 2:
        raise UserError(f"--window_size {config.window_size}: must be at least 2 (context k-mers plus one target)")
    if config.val_fraction + config.test_fraction >= 1:
        raise UserError(
            f"--val_fraction {config.val_fraction} + --test_fraction {config.test_fraction}: must sum to less than 1"
        )
    if not 1 <= config.leak_length <= 32:
        raise UserError(f"--leak_length {config.leak_length}: must be between 1 and 32 nucleotides")
    if config.gene_map and config.split_by in ("transcript", "region"):
        raise UserError(f"--gene_map: has no use with --split_by {config.split_by}; drop one of them")
    kmer_dtype(config.k)
    for path in [*config.fasta, *([config.gene_map] if config.gene_map else [])]:
        if not Path(path).is_file():
            flag = "--gene_map" if path == config.gene_map else "--fasta"
            raise UserError(f"{flag} {path}: file not found")

"""FASTA -> one k-mer stream per split: the data stage of the autoregressive task.

A sequence becomes k-mers (one every `stride` nucleotides), stored once as ids in the split's k-mer stream
(quixer_rna.formats.kmer_stream); windows of `window_size` k-mers (one every `window_step` k-mers) are views of that
stream, never stored rows. A model reads the first `window_size - 1` k-mers of a window and predicts the last.

What is kept whole in one split (`--split_by`):
- gene (default): transcripts of one gene, named by --gene_map, the header, or for transcripts whose header names
  no gene, inferred from an overlapping locus or shared sequence (quixer_rna.grouping): isoforms share exons, so
  splitting below the gene puts test targets into training;
- family: transcripts sharing sequence as well (paralogs), named or not;
- transcript: each transcript alone (only to measure the leak that the others avoid);
- region: for chromosomes and genomes, each record cut into blocks of --block_size nucleotides; where consecutive
  blocks go to different splits, the first window span of the later block is left out (a guard), so no window
  and no target of one split lies next to the other's sequence.

Units are shuffled with a seeded RNG from their sorted order, then test and then val take units until they hold at
least their fraction of all windows; the rest is train. Afterwards the leak figure (quixer_rna.leak) measures how
much val and test sequence occurs in train, and warns above --leak_threshold.

Records are read in pieces (quixer_rna.fasta), each record's bases held once as one byte each, and its k-mer ids
(2 bytes per 6-mer) kept until the streams are written: memory is bounded by the largest record plus the ids.
"""

from .collect import clean_sequence
from .config import SPLIT_BY, PrepareConfig, window_span
from .split import assign_splits
from .stage import SPLITS_FILE, STAGE, run_prepare

__all__ = ["PrepareConfig", "SPLIT_BY", "SPLITS_FILE", "STAGE", "assign_splits", "clean_sequence", "run_prepare",
           "window_span"]

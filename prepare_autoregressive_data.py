#!/usr/bin/env python3
"""FASTA -> k-mer streams for next-k-mer prediction, split into train/val/test by gene (or family, or region).

Each record (NCBI, old NCBI gi|, GENCODE, Ensembl cDNA or UCSC headers; plain or .gz; transcripts, chromosomes or
whole genomes) has U read as T, lowercase read as its base (or, with --soft_masked drop, as a gap), and is cut
into k-mers every --stride nucleotides, stored once per split as a stream of k-mer ids (<output_dir>/<split>/
kmers.bin, segments.npy, transcripts.tsv; see quixer_rna/formats/kmer_stream.py). Windows of --window_size k-mers
start every --window_step k-mers (a model reads the first window_size-1 and predicts the last); they are views of
the stream, never stored rows, and later stages read k, stride, window size and step from metadata.json. Windows
holding a letter other than ACGT are skipped and counted. Whole genes go to one split (isoforms share exons): a
gene is named by --gene_map, by the header, or inferred from an overlapping locus or shared sequence; --split_by
region cuts chromosomes into blocks. Also writes splits.tsv (which transcript or block went where, and how its gene
was decided), leak.tsv and a leak figure in metadata.json (the share of val and test sequence found in train),
args.json and metrics.json; --write_sentences adds the seeds' one-window-per-line {split}/sentences.txt,
labels.txt and sources.txt.
"""

from quixer_rna.cli import add_common_args, add_dataclass_args, config_from_args, make_parser, run_cli
from quixer_rna.prepare import PrepareConfig, run_prepare


def build_parser():
    parser = make_parser(__doc__, __file__)
    add_dataclass_args(parser, PrepareConfig, skip=("seed", "overwrite"))
    add_common_args(parser)
    return parser


def main(argv=None) -> int:
    return run_cli(build_parser(), lambda args: run_prepare(config_from_args(PrepareConfig, args)), argv)


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""FASTA -> k-mer streams for next-k-mer prediction, split into train/val/test by gene.

Each transcript (NCBI, old NCBI gi| or GENCODE headers; plain or .gz) is uppercased, U becomes T, and
cut into k-mers every --stride nucleotides, stored once per split as a stream of k-mer ids
(<output_dir>/<split>/kmers.bin, segments.npy, transcripts.tsv; see quixer_rna/formats/kmer_stream.py).
Windows of --window_size k-mers start every --window_step k-mers (a model reads the first window_size-1
and predicts the last); they are views of the stream, never stored rows, and later stages read k, stride,
window size and step from metadata.json. Windows holding a letter other than ACGT are skipped and
counted. Whole genes go to one split (isoforms share exons), so no test target is seen in training.
Also writes splits.tsv (which transcript and gene went where), args.json and metrics.json;
--write_sentences adds the seeds' one-window-per-line {split}/sentences.txt, labels.txt and sources.txt.
"""

from quixer_rna.cli import add_common_args, every, make_parser, open_fraction, positive_int, nonnegative_int, run_cli
from quixer_rna.prepare import SPLIT_BY, run_prepare


def build_parser():
    parser = make_parser(__doc__, __file__)
    parser.add_argument("--fasta", nargs="+", action="extend", required=True, metavar="FILE",
                        help="one or more FASTA files, plain or gzip; repeat the flag or list several")
    parser.add_argument("--output_dir", required=True, help="folder for the k-mer streams and metadata.json")
    parser.add_argument("--k", type=positive_int, default=6, help="k-mer length in nucleotides")
    parser.add_argument("--window_size", type=positive_int, default=32,
                        help="k-mers per window: window_size-1 of context, then the target")
    parser.add_argument("--min_length", type=nonnegative_int, default=200,
                        help="skip (and count) transcripts shorter than this many nucleotides")
    parser.add_argument("--stride", type=positive_int, default=None,
                        help="nucleotides between k-mer starts; default k (non-overlapping k-mers), 1 overlaps them")
    parser.add_argument("--window_step", type=positive_int, default=1,
                        help="k-mers between window starts; 1 makes every k-mer after the first window_size-1 of a "
                             "transcript a target exactly once, window_size gives disjoint windows")
    parser.add_argument("--val_fraction", type=open_fraction, default=0.1, help="fraction of windows for validation")
    parser.add_argument("--test_fraction", type=open_fraction, default=0.1, help="fraction of windows for test")
    parser.add_argument("--split_by", choices=SPLIT_BY, default="gene",
                        help="unit kept whole in one split: 'gene' (no isoform leakage) or 'transcript'")
    parser.add_argument("--write_sentences", action="store_true",
                        help="also write the seeds' layout, {split}/sentences.txt (one window of k-mers a line), "
                             "labels.txt and sources.txt, for people who read it; no stage reads it (at full scale it "
                             "is ~35x the FASTA)")
    parser.add_argument("--log_every", type=every, default=every("60s"),
                        help="without a terminal, log progress every N records or every Ns seconds")
    add_common_args(parser)
    return parser


def _body(args):
    if args.stride is None:
        args.stride = args.k
    return run_prepare(args)


def main(argv=None) -> int:
    return run_cli(build_parser(), _body, argv)


if __name__ == "__main__":
    raise SystemExit(main())

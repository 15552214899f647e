#!/usr/bin/env python3
"""FASTA -> k-mer sentences for next-k-mer prediction, split into train/val/test by gene.

Each transcript (NCBI, old NCBI gi| or GENCODE headers; plain or .gz) is uppercased, U becomes T, and
cut into k-mers every --stride nucleotides; windows of --window_size k-mers start every --window_step
k-mers (a model reads the first window_size-1 and predicts the last). Windows holding a letter other
than ACGT are skipped and counted. Whole genes go to one split (isoforms share exons), so no test target
is seen in training. Writes <output_dir>/{train,val,test}/{sentences,labels,sources}.txt, metadata.json
(counts, skips, parameters, input sha256), splits.tsv (which transcript and gene went where), args.json
and metrics.json.
"""

from quixer_rna.cli import add_common_args, make_parser, run_cli
from quixer_rna.data import SPLIT_BY, run_prepare


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--fasta", nargs="+", action="extend", required=True, metavar="FILE",
                        help="one or more FASTA files, plain or gzip; repeat the flag or list several")
    parser.add_argument("--output_dir", required=True, help="folder for the k-mer sentences and metadata.json")
    parser.add_argument("--k", type=int, default=6, help="k-mer length in nucleotides")
    parser.add_argument("--window_size", type=int, default=32,
                        help="k-mers per window: window_size-1 of context, then the target")
    parser.add_argument("--min_length", type=int, default=200,
                        help="skip (and count) transcripts shorter than this many nucleotides")
    parser.add_argument("--stride", type=int, default=None,
                        help="nucleotides between k-mer starts; default k (non-overlapping k-mers), 1 overlaps them")
    parser.add_argument("--window_step", type=int, default=1,
                        help="k-mers between window starts; 1 makes every k-mer after the first window_size-1 of a "
                             "transcript a target exactly once, window_size gives disjoint windows")
    parser.add_argument("--val_fraction", type=float, default=0.1, help="fraction of windows for validation")
    parser.add_argument("--test_fraction", type=float, default=0.1, help="fraction of windows for test")
    parser.add_argument("--split_by", choices=SPLIT_BY, default="gene",
                        help="unit kept whole in one split: 'gene' (no isoform leakage) or 'transcript'")
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

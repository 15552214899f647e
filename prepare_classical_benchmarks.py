#!/usr/bin/env python3
"""k-mer sentences (the output of prepare_autoregressive_data.py) -> raw k-mer token files for the
classical baselines, with no quantum encoding: every k-mer is its own token, its id fixed by the k-mer
(A=0 C=1 G=2 T=3 in base 4, vocab_size = 4^k), in the same {train,val,test}.pt format the quantizer
writes (sources kept). Also writes vocab.json (k, vocab_size, the id rule, id -> k-mer for the k-mers
seen), metadata.json, args.json and metrics.json."""

from quixer_rna.classical_tokens import run_prepare_classical
from quixer_rna.cli import add_common_args, make_parser, run_cli


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--data_dir", required=True, help="output folder of prepare_autoregressive_data.py (k-mer sentences)")
    parser.add_argument("--output_dir", required=True, help="folder for train.pt, val.pt, test.pt, vocab.json and metadata.json")
    add_common_args(parser)
    return parser


def main(argv=None) -> int:
    return run_cli(build_parser(), run_prepare_classical, argv)


if __name__ == "__main__":
    raise SystemExit(main())

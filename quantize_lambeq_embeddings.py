#!/usr/bin/env python3
"""Turn the embeddings written by lambeq_encoder.py into discrete tokens: fit k-means on the train split
(a k-mer table: the distinct k-mer embeddings weighted by how often their k-mers occur over the train
windows' positions; contextual per-window embeddings: mini-batch k-means over every vector), give every
k-mer (or every window position) the id of its nearest centre, and write the k-mer -> token map
(kmer_tokens.npy, kmer_tokens.tsv) or per-window tokens ({split}_tokens.npy), cluster_centers.pt and
metadata.json with inertia, cluster sizes, token entropy and neighbour statistics. The window length comes
from the k-mer stream the embeddings name; --write_pt also exports the seeds' {split}.pt token files
(sequences [N, 32]), which no stage reads."""

from quixer_rna.cli import add_common_args, add_dataclass_args, config_from_args, make_parser, run_cli
from quixer_rna.quantization import QuantizeConfig, run_quantize


def build_parser():
    parser = make_parser(__doc__, __file__)
    add_dataclass_args(parser, QuantizeConfig, skip=("seed", "overwrite"))
    add_common_args(parser)
    return parser


def main(argv=None) -> int:
    return run_cli(build_parser(), lambda args: run_quantize(config_from_args(QuantizeConfig, args)), argv)


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Turn the embeddings written by lambeq_encoder.py into discrete tokens: fit k-means on the train
split (compact input: the distinct k-mer embeddings weighted by their train counts; dense input:
mini-batch k-means over every vector), give every position of every split the id of its nearest
centre, and write train/val/test token files, cluster_centers.pt, the k-mer -> token map (compact
input) and metadata.json with inertia, cluster sizes, token entropy and neighbour statistics."""

from quixer_rna.cli import add_common_args, make_parser, run_cli
from quixer_rna.quantization import ALGORITHMS, run_quantize


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--embeddings_dir", required=True, help="folder written by lambeq_encoder.py (train/val/test.pt)")
    parser.add_argument("--output_dir", required=True, help="folder for the token files, centres and metadata")
    parser.add_argument("--n_clusters", type=int, default=512, help="number of k-means clusters = token vocabulary size")
    parser.add_argument("--seq_len", type=int, default=32, help="positions per window; the embeddings must match it")
    parser.add_argument(
        "--algorithm",
        choices=ALGORITHMS,
        default="auto",
        help="'kmeans': full k-means over the distinct train vectors weighted by their counts; 'minibatch': "
        "mini-batch k-means; 'auto': kmeans for compact input, minibatch for dense input",
    )
    parser.add_argument("--batch_size", type=int, default=4096, help="mini-batch size of mini-batch k-means")
    parser.add_argument("--n_init", type=int, default=3, help="k-means++ restarts; the lowest-inertia run is kept")
    parser.add_argument(
        "--max_iter",
        type=int,
        default=300,
        help="most Lloyd iterations (kmeans) or passes over the data (minibatch, which also stops early)",
    )
    add_common_args(parser, device=False, overwrite=True)
    return parser


def main(argv=None) -> int:
    return run_cli(build_parser(), run_quantize, argv)


if __name__ == "__main__":
    raise SystemExit(main())

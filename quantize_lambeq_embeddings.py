#!/usr/bin/env python3
"""Turn the embeddings written by lambeq_encoder.py into discrete tokens: fit k-means on the train split
(a k-mer table: the distinct k-mer embeddings weighted by how often their k-mers occur over the train
windows' positions; contextual per-window embeddings: mini-batch k-means over every vector), give every
k-mer (or every window position) the id of its nearest centre, and write the k-mer -> token map
(kmer_tokens.npy, kmer_tokens.tsv) or per-window tokens ({split}_tokens.npy), cluster_centers.pt and
metadata.json with inertia, cluster sizes, token entropy and neighbour statistics. The window length comes
from the k-mer stream the embeddings name; --write_pt also exports the seeds' {split}.pt token files
(sequences [N, 32]), which no stage reads."""

from quixer_rna.cli import add_common_args, every, make_parser, positive_int, run_cli
from quixer_rna.quantization import ALGORITHMS, run_quantize


def build_parser():
    parser = make_parser(__doc__, __file__)
    parser.add_argument("--embeddings_dir", required=True, help="folder written by lambeq_encoder.py")
    parser.add_argument("--output_dir", required=True, help="folder for the token map, centres and metadata")
    parser.add_argument("--n_clusters", type=positive_int, default=512,
                        help="number of k-means clusters = token vocabulary size")
    parser.add_argument("--seq_len", type=positive_int, default=None,
                        help="positions per window; read from the k-mer stream, an error when it differs")
    parser.add_argument(
        "--algorithm",
        choices=ALGORITHMS,
        default="auto",
        help="'kmeans': full k-means over the distinct train vectors weighted by their counts; 'minibatch': "
        "mini-batch k-means; 'auto': kmeans for a k-mer table, minibatch for per-window embeddings",
    )
    parser.add_argument("--batch_size", type=positive_int, default=4096, help="mini-batch size of mini-batch k-means")
    parser.add_argument("--n_init", type=positive_int, default=3, help="k-means++ restarts; the lowest-inertia run is kept")
    parser.add_argument(
        "--max_iter",
        type=positive_int,
        default=300,
        help="most Lloyd iterations (kmeans) or passes over the data (minibatch, which also stops early)",
    )
    parser.add_argument("--write_pt", action="store_true",
                        help="also export the seeds' {split}.pt token files (sequences [N, L]); no stage reads them")
    parser.add_argument("--log_every", type=every, default=every("60s"),
                        help="without a terminal, log progress every N windows or every Ns seconds")
    add_common_args(parser, device=False, overwrite=True)
    return parser


def main(argv=None) -> int:
    return run_cli(build_parser(), run_quantize, argv)


if __name__ == "__main__":
    raise SystemExit(main())

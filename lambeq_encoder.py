#!/usr/bin/env python3
"""k-mer sentences -> per-k-mer quantum-circuit embeddings built with lambeq.

Each k-mer is a lambeq word turned into an n-qubit circuit by a lambeq ansatz: an encoding layer writes
its bases as tetrahedral single-qubit states (base j on qubit j mod n, Ry then Rz), then the ansatz's
layers, with weights shared by every k-mer and drawn from --seed. Similar k-mers get similar states: with
k <= n the overlap of two k-mers' states is exactly (1/3)^Hamming. The embedding is the readout of the
state: the 2^n probabilities (--embedding_dim 64 -> 6 qubits) or the real and imaginary parts of the 2^n
amplitudes (--embedding_dim 128 -> 6 qubits).

Context-free k-mers (--context none) have at most 4^k embeddings: all of them are evaluated once, in
one batch, and windows are looked up in that table; by default each split is written compact and exact
(kmer_ids [N, L] + table [4^k, D], see quixer_rna.formats.embeddings; its loader gives the dense view on
demand), --dense writes embeddings [N, L, D] itself (100k windows of 32 at D=64: 819 MB).
--context stairs composes the words left to right with lambeq's stairs_reader (prefix state = STAIR box
applied to the previous state and the next word, post-selected and renormalised) and writes one
contextual embedding per position, always dense.

Writes <output_dir>/{train,val,test}.pt, metadata.json (lambeq version, circuit, counts, distinct
embeddings, timings), args.json and metrics.json.
"""

from quixer_rna.cli import add_common_args, make_parser, run_cli
from quixer_rna.encoding import ANSATZE, CONTEXTS, DEFAULT_ANSATZ, DEFAULT_LAYERS, READOUTS, run_encode


def build_parser():
    parser = make_parser(__doc__)
    parser.add_argument("--data_dir", required=True, help="k-mer sentence folder written by prepare_autoregressive_data.py")
    parser.add_argument("--output_dir", required=True, help="folder for {train,val,test}.pt and metadata.json")
    parser.add_argument("--k", type=int, default=6, help="k-mer length; every token must be a k-mer of this length over ACGT")
    parser.add_argument("--max_kmers", type=int, default=32, help="most k-mers a window may hold; a longer line is an error")
    parser.add_argument("--embedding_dim", type=int, default=64,
                        help="length of the readout: 2^n probabilities of n qubits (64 -> 6 qubits), or 2 * 2^n "
                             "amplitude parts with --readout amplitudes (128 -> 6 qubits); anything else is an error")
    parser.add_argument("--ansatz", choices=ANSATZE, default=DEFAULT_ANSATZ,
                        help="lambeq circuit ansatz of the shared layers. Sim14 (default, with 1 layer): Ry layers and "
                             "two rings of controlled-Rx. Measured on all 4096 6-mers with probabilities (3 seeds): it "
                             "kept the Hamming structure nearly as well as StronglyEntangling (Spearman 0.39-0.42 vs "
                             "0.44 between Hamming and state-distance) while keeping k-mers 5-10x further from their "
                             "nearest neighbour (median 0.06-0.08 vs 0.004-0.02), which the quantizer needs; more "
                             "layers scramble the Hamming structure. IQP: Hadamards and CRz ladders; Sim15: Ry and CNOT "
                             "rings; StronglyEntangling: Rz-Ry-Rz and CNOT rings")
    parser.add_argument("--layers", type=int, default=DEFAULT_LAYERS, help="layers of the ansatz (shared by every k-mer)")
    parser.add_argument("--readout", choices=READOUTS, default="probabilities",
                        help="probabilities of the basis states, or real and imaginary parts of the amplitudes "
                             "(amplitudes keep the exact state overlaps)")
    parser.add_argument("--context", choices=CONTEXTS, default="none",
                        help="'none': one embedding per k-mer (a table lookup); 'stairs': contextual embeddings from "
                             "lambeq's stairs_reader composition (slow on CPU: 2n-qubit steps per position)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes for the work worth splitting: reading and validating the splits (one process "
                             "per split, only when the sentence files total 64 MB or more: below that a process's "
                             "start-up costs more than it saves) and the window chunks of --context stairs on CPU. "
                             "The table itself is one batch (torch threads: OMP_NUM_THREADS); never a process per k-mer")
    parser.add_argument("--dense", action="store_true",
                        help="write embeddings [N, L, D] (the seeds' layout) instead of the compact kmer_ids + table")
    add_common_args(parser, device=True)
    return parser


def main(argv=None) -> int:
    return run_cli(build_parser(), run_encode, argv)


if __name__ == "__main__":
    raise SystemExit(main())

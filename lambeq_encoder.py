#!/usr/bin/env python3
"""k-mer sentences -> per-k-mer quantum-circuit embeddings built with lambeq.

Each k-mer is a lambeq word turned into an n-qubit circuit by a lambeq ansatz: an encoding layer writes
its bases as tetrahedral single-qubit states (base j on qubit j mod n, Ry then Rz), then the ansatz's
layers, with weights shared by every k-mer and drawn from --seed. Similar k-mers get similar states: with
k <= n the overlap of two k-mers' states is exactly (1/3)^Hamming. The embedding is the readout of the
state: the 2^n probabilities (--embedding_dim 64 -> 6 qubits) or the real and imaginary parts of the 2^n
amplitudes (--embedding_dim 128 -> 6 qubits).

k, the window length and the data come from the k-mer stream folder of prepare_autoregressive_data.py
(--data_dir): --k and --max_kmers need not be given, and are refused when they contradict it.

Context-free k-mers (--context none) have at most 4^k embeddings: all of them are evaluated once, in
one batch, and written as one table (table.npy, [4^k, D]; for k > 10 only the k-mers that occur); a
window's embeddings are the rows of its k-mers, so nothing per window is stored. --dense also writes the
seeds' per-window layout {split}.pt (embeddings [N, L, D]; 100k windows of 32 at D=64: 819 MB) as an
export that no stage reads. --context stairs composes the words left to right with lambeq's stairs_reader
(prefix state = STAIR box applied to the previous state and the next word, post-selected and
renormalised) and writes one contextual embedding per position ({split}_embeddings.npy).

Writes <output_dir>/metadata.json (format, the stream it read and its checksums, lambeq version, circuit,
counts, distinct embeddings, timings), args.json and metrics.json.
"""

from quixer_rna.cli import add_common_args, add_dataclass_args, config_from_args, make_parser, run_cli
from quixer_rna.encoding.stage import EncodeConfig, run_encode


def build_parser():
    parser = make_parser(__doc__, __file__)
    add_dataclass_args(parser, EncodeConfig, skip=("seed", "device", "overwrite"))
    add_common_args(parser, device=True)
    return parser


def main(argv=None) -> int:
    return run_cli(build_parser(), lambda args: run_encode(config_from_args(EncodeConfig, args)), argv)


if __name__ == "__main__":
    raise SystemExit(main())

"""k-mers -> lambeq circuits -> embeddings.

Each k-mer is a lambeq word `Word(kmer, S)` that a lambeq ansatz turns into an n-qubit circuit. The
ansatz alone would give every k-mer its own random parameters; here an encoding layer writes the bases
into the circuit first and the ansatz's parameters are shared by every k-mer (seeded), so the circuit of
a k-mer is a fixed template whose only k-mer-dependent parameters are the encoding angles.

Encoding layer: base j goes to qubit j mod n as Ry(theta_b) then Rz(phi_b) (lambeq gates, turns),
which takes |0> to the Bloch vector of vertex b of a regular tetrahedron, A=(1,1,1), C=(1,-1,-1),
G=(-1,1,-1), T=(-1,-1,1) over sqrt(3). Any two distinct vertices have fidelity 1/3, so with k <= n the
encoded product states have overlap |<x|y>|^2 = (1/3)^Hamming(x, y), and the shared (unitary) layers keep
every overlap. With k > n, qubit q carries bases q, q+n, ...: their rotations compose (the later base
rotates the state the earlier one prepared), which keeps the order of the bases but is no longer a
product of tetrahedral states: overlaps stop being (1/3)^Hamming and distinct k-mers can come close.

The template is read from lambeq's circuit into a gate list (quixer_rna.lambeq_sim) and evaluated for
all 4^k k-mers in one batch; the tests check it against lambeq's own evaluation. `--context stairs` uses
lambeq's stairs_reader composition: prefix state_t = STAIR(state_{t-1} (x) word_t), post-selected and
renormalised after every step (a whole 32-word stairs diagram post-selects away nearly all the norm).

Modules, each using only those before it: `circuits` (the lambeq side: ansatz, encoding layer, template
and STAIR circuits, lambeq's own evaluation), `translate` (a lambeq circuit -> a lambeq_sim gate list),
`encoder` (KmerEncoder: the 4^k x D table, the stairs context, the dense export) and `stage` (the
lambeq_encoder.py command: flag checks, the run record, the embedding folder and its metadata.json).
"""

from .encoder import KmerEncoder, encode_kmer_table, readout_of

__all__ = ["KmerEncoder", "encode_kmer_table", "readout_of"]

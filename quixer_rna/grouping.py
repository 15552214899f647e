"""Which transcripts must share a split: the units prepare keeps whole.

A transcript's gene comes, in this order, from a --gene_map table, from its FASTA header (NCBI symbol, GENCODE or
Ensembl gene id), or nowhere. Transcripts with a gene name are grouped by it. Those without one (UCSC exports,
id-only FASTA) are grouped by what they share with others: an overlapping locus on the same strand (a header's
`range=chr:start-end strand=`), or shared sequence. `--split_by family` joins every pair of transcripts sharing
sequence, named or not, so paralogs stay on one side too.

Shared sequence is found with minimizers (Roberts et al. 2004): in every window of `min_run - a + 1` consecutive
a-mers (a = min(32, min_run)), the a-mer of smallest hash is the window's anchor, so two sequences sharing a run of
`min_run` identical nucleotides share at least that window's anchor, and a longer shared run about one more anchor
per (window + 1) / 2 nucleotides. Anchors are a bijective 64-bit hash of exact a-mers: equal anchors mean equal
a-mers. Two transcripts are joined when they share at least `min_anchors` anchors. One shared anchor is not enough:
on the 4,000 real RefSeq mRNAs of ../shared, links by a single anchor (a shared Alu copy, mostly) chain 564
transcripts of unrelated genes into one group, while every pair of isoforms of one gene shares at least 10
anchors; at 4 anchors (about 75 shared nucleotides at the defaults) the largest group holds 28 transcripts and no
gene is split. An anchor found in more than REPEAT_TRANSCRIPTS transcripts (poly-A, simple repeats) links nothing.
Memory grows with the anchors (about 2/(window + 1) of the nucleotides, 12 bytes each) and with the pairs sharing
one, never with all pairs of transcripts; groups are the connected components of the links (scipy).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from .errors import UserError
from .fasta import Locus
from .sequence import OTHER, codes_inside_runs, nucleotides_of_kmers

GENE_SOURCES = ("map", "header", "locus", "sequence")
GENE_COLUMNS = ("gene", "gene_id", "entrez_gene_id", "gene_symbol", "symbol", "gene_name")
MAX_ANCHOR = 32
# An anchor held by more transcripts than this is a repeat (poly-A, simple repeats, the youngest Alu copies) or a
# huge isoform family: it links nothing, so that neither ties unrelated genes together.
REPEAT_TRANSCRIPTS = 20
BATCH_NUCLEOTIDES = 1 << 24
_MAX = np.uint64(np.iinfo(np.uint64).max)


@dataclass
class Member:
    """What grouping needs of one transcript: its accession, the gene and locus its header gives, and its k-mers
    (ids, and the (first, length) runs of valid ones)."""

    accession: str
    header_gene: str | None
    locus: Locus | None
    ids: np.ndarray
    runs: np.ndarray  # int64 [S, 2]: first k-mer index, length


@dataclass
class Grouping:
    """Per transcript: the unit it is split with, its own gene (named or inferred) and how that was decided."""

    group: list[str]
    gene: list[str]
    source: list[str]
    stats: dict = field(default_factory=dict)


# ---- the gene table --------------------------------------------------------------------------------------------

def read_gene_map(path: str | Path, column: str = "auto") -> GeneMap:
    """transcript id -> gene from a TSV: the first column holds the FASTA header's first word (or its accession,
    with or without version), the gene column is `column`, or with 'auto' the first of GENE_COLUMNS the header row
    names, else the second column. Rows with an empty gene are left out (those transcripts fall back)."""
    path = Path(path)
    flag = f"--gene_map {path}"
    if not path.is_file():
        raise UserError(f"{flag}: file not found")
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            rows = [row for row in csv.reader(handle, delimiter="\t") if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{flag}: unreadable ({exc})") from exc
    if not rows:
        raise UserError(f"{flag}: empty; expected a TSV of transcript id and gene")
    names = [cell.strip().lower() for cell in rows[0]]
    has_header = any(name in GENE_COLUMNS for name in names) or column != "auto"
    if column != "auto":
        if column.lower() not in names:
            raise UserError(f"{flag}: no column named {column!r} in its header row ({', '.join(rows[0])})")
        index = names.index(column.lower())
    else:
        index = next((names.index(name) for name in GENE_COLUMNS if name in names), 1)
    gene_of: dict[str, str] = {}
    for line, row in enumerate(rows[1:] if has_header else rows, start=2 if has_header else 1):
        if len(row) <= index:
            raise UserError(f"{flag}:{line}: {len(row)} column(s); expected transcript id and gene (tab-separated)")
        transcript, gene = row[0].strip(), row[index].strip()
        if not gene or gene.upper() == "NA":
            continue
        if gene_of.get(transcript, gene) != gene:
            raise UserError(f"{flag}:{line}: {transcript} maps to two genes ({gene_of[transcript]}, {gene})")
        gene_of[transcript] = gene
    if not gene_of:
        raise UserError(f"{flag}: no row names a gene (gene column {rows[0][index] if has_header else 2})")
    return GeneMap(gene_of)


@dataclass
class GeneMap:
    """A --gene_map table: looks an accession up exactly, else without its version suffix on either side."""

    gene_of: dict[str, str]
    bare: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.bare = {name.rsplit(".", 1)[0]: gene for name, gene in self.gene_of.items()}

    def get(self, accession: str) -> str | None:
        if accession in self.gene_of:
            return self.gene_of[accession]
        return self.bare.get(accession.rsplit(".", 1)[0])


# ---- links ----------------------------------------------------------------------------------------------------

def locus_links(loci: Sequence[Locus | None], candidates: np.ndarray) -> np.ndarray:
    """[E, 2] links between candidate transcripts whose loci overlap on the same chromosome and strand."""
    rows = [(locus.chrom, locus.strand, locus.start, locus.end, int(i)) for i in candidates
            if (locus := loci[int(i)]) is not None]
    rows.sort()
    links: list[tuple[int, int]] = []
    first, reach, key = -1, -1, None
    for chrom, strand, start, end, index in rows:
        if (chrom, strand) != key or start > reach:
            first, reach, key = index, end, (chrom, strand)
        else:
            links.append((first, index))
            reach = max(reach, end)
    return np.asarray(links, dtype=np.int64).reshape(-1, 2)


def _splitmix(values: np.ndarray) -> np.ndarray:
    """A bijective 64-bit mix (splitmix64's finaliser): equal hashes mean equal codes, and minima look random."""
    x = values.copy()
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def sliding_min(values: np.ndarray, width: int) -> np.ndarray:
    """Minimum of every window of `width` consecutive values (van Herk / Gil-Werman: three passes, any width)."""
    n = len(values)
    if n < width:
        return np.zeros(0, dtype=values.dtype)
    padded = np.concatenate((values, np.full((-n) % width, _MAX, dtype=values.dtype))).reshape(-1, width)
    prefix = np.minimum.accumulate(padded, axis=1).ravel()
    suffix = np.minimum.accumulate(padded[:, ::-1], axis=1)[:, ::-1].ravel()
    return np.minimum(suffix[: n - width + 1], prefix[width - 1: n])


def anchor_length(min_run: int) -> tuple[int, int]:
    """(a-mer length, window of a-mers) guaranteeing a shared anchor for every shared run of `min_run` bases."""
    size = min(MAX_ANCHOR, min_run)
    return size, min_run - size + 1


def batch_anchors(members: Sequence[Member], indices: Sequence[int], k: int, stride: int,
                  min_run: int) -> tuple[np.ndarray, np.ndarray]:
    """(anchor hash, transcript index) of the given transcripts, one pair per distinct anchor and transcript."""
    size, window = anchor_length(min_run)
    pieces, owners = [], []
    for index in indices:
        member = members[index]
        if not len(member.runs):
            continue
        ids = np.concatenate([member.ids[first:first + length] for first, length in member.runs])
        digits, lengths = nucleotides_of_kmers(ids, member.runs[:, 1], k, stride)
        # one non-base between a transcript's runs, `window` before each transcript: no a-mer and no window
        # of a-mers reaches across
        breaks = np.cumsum(lengths)[:-1]
        digits = np.insert(digits, breaks, OTHER)
        pieces.append(np.full(window, OTHER, dtype=np.uint8))
        pieces.append(digits)
        owners.append(np.full(window + len(digits), index, dtype=np.int64))
    if not pieces:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    digits, owner = np.concatenate(pieces), np.concatenate(owners)
    codes, positions = codes_inside_runs(digits, np.asarray([len(digits)]), size)
    hashed = np.full(max(0, len(digits) - size + 1), _MAX, dtype=np.uint64)
    hashed[positions] = _splitmix(codes)
    minima = sliding_min(hashed, window)
    owner = owner[: len(minima)]
    keep = minima != _MAX
    minima, owner = minima[keep], owner[keep]
    change = np.ones(len(minima), dtype=bool)
    change[1:] = (minima[1:] != minima[:-1]) | (owner[1:] != owner[:-1])
    return minima[change], owner[change]


def sequence_links(members: Sequence[Member], k: int, stride: int, min_run: int, min_anchors: int,
                   progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, dict]:
    """[E, 2] links between transcripts sharing at least `min_anchors` anchors, each found in at most
    REPEAT_TRANSCRIPTS transcripts, and counts of what was found (anchors, shared ones, repeats ignored)."""
    values, owners = [], []
    for batch in _batches(members, stride):
        batch_values, batch_owners = batch_anchors(members, batch, k, stride, min_run)
        values.append(batch_values)
        owners.append(batch_owners)
        if progress is not None:
            progress(len(batch))
    value = np.concatenate(values) if values else np.zeros(0, dtype=np.uint64)
    owner = np.concatenate(owners) if owners else np.zeros(0, dtype=np.int64)
    order = np.lexsort((owner, value))
    value, owner = value[order], owner[order]
    distinct = np.ones(len(value), dtype=bool)
    distinct[1:] = (value[1:] != value[:-1]) | (owner[1:] != owner[:-1])
    value, owner = value[distinct], owner[distinct]
    starts = np.flatnonzero(np.concatenate(([True], value[1:] != value[:-1]))) if len(value) else np.zeros(0, int)
    sizes = np.diff(np.concatenate((starts, [len(value)])))
    pairs = [np.zeros(0, dtype=np.int64)]
    for size in range(2, REPEAT_TRANSCRIPTS + 1):  # every pair of transcripts holding each shared anchor
        first = starts[sizes == size]
        if len(first):
            i, j = np.triu_indices(size, 1)
            pairs.append((owner[first[:, None] + i] * len(members) + owner[first[:, None] + j]).ravel())
    code, shared = np.unique(np.concatenate(pairs), return_counts=True)
    code = code[shared >= min_anchors]
    links = np.stack((code // len(members), code % len(members)), axis=1) if len(members) else code.reshape(-1, 2)
    stats = {"anchors": int(len(value)), "shared_anchors": int(((sizes >= 2) & (sizes <= REPEAT_TRANSCRIPTS)).sum()),
             "repeat_anchors_ignored": int((sizes > REPEAT_TRANSCRIPTS).sum()),
             "pairs_sharing_an_anchor": int(len(shared)), "pairs_linked": int(len(links))}
    return links, stats


def _batches(members: Sequence[Member], stride: int) -> Iterator[list[int]]:
    batch: list[int] = []
    held = 0
    for index, member in enumerate(members):
        batch.append(index)
        held += int(member.runs[:, 1].sum()) if len(member.runs) else 0
        if held * stride >= BATCH_NUCLEOTIDES:
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


# ---- groups ---------------------------------------------------------------------------------------------------

def components(count: int, links: Iterable[np.ndarray]) -> np.ndarray:
    """Component number of each of `count` nodes joined by the [E, 2] links (numbered by first member)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = np.concatenate([np.asarray(p, dtype=np.int64).reshape(-1, 2) for p in links] or [np.zeros((0, 2), int)])
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(count, count))
    _, labels = connected_components(graph, directed=False)
    first_seen = {}
    return np.asarray([first_seen.setdefault(label, len(first_seen)) for label in labels.tolist()], dtype=np.int64)


def group_transcripts(members: Sequence[Member], *, family: bool, gene_map: GeneMap | None, k: int,
                      stride: int, min_run: int, min_anchors: int,
                      progress: Callable[[int], None] | None = None) -> Grouping:
    """The split unit of every transcript (see the module docstring). `family` links every pair sharing a run;
    otherwise only pairs where at least one transcript has no gene name."""
    n = len(members)
    gene: list[str | None] = []
    source: list[str] = []
    for member in members:
        mapped = gene_map.get(member.accession) if gene_map else None
        if mapped is not None:
            gene.append(mapped)
            source.append("map")
        elif member.header_gene is not None:
            gene.append(member.header_gene)
            source.append("header")
        else:
            gene.append(None)
            source.append("sequence")
    named = np.asarray([g is not None for g in gene], dtype=bool)
    first_of: dict[str, int] = {}
    name_links = np.asarray([(first_of.setdefault(g, i), i) for i, g in enumerate(gene) if g is not None],
                            dtype=np.int64).reshape(-1, 2)
    unnamed = np.flatnonzero(~named)
    by_locus = locus_links([m.locus for m in members], unnamed)
    for a, b in by_locus:
        source[a] = source[b] = "locus"
    stats: dict = {"named": int(named.sum()), "unnamed": int(len(unnamed)), "locus_links": int(len(by_locus))}
    seq_links = np.zeros((0, 2), dtype=np.int64)
    if family or len(unnamed):
        if stride > k:
            if family:
                raise UserError(f"--split_by family: --stride {stride} > --k {k} leaves gaps between k-mers, so "
                                "shared sequence cannot be compared; use --stride <= --k")
            stats["sequence"] = f"not compared: --stride {stride} > --k {k}"
        else:
            seq_links, found = sequence_links(members, k, stride, min_run, min_anchors, progress)
            if not family:
                seq_links = seq_links[~(named[seq_links[:, 0]] & named[seq_links[:, 1]])]
            stats.update(found, sequence_links=int(len(seq_links)))
    labels = components(n, (name_links, by_locus, seq_links))
    own = [g if g is not None else members[i].accession.rsplit(".", 1)[0] for i, g in enumerate(gene)]
    names_in: dict[int, set[str]] = {}
    for label, name in zip(labels.tolist(), own):
        names_in.setdefault(label, set()).add(name)
    label_name = {label: _group_name(names) for label, names in names_in.items()}
    sizes = np.bincount(labels, minlength=1)
    stats.update(groups=int(labels.max()) + 1 if n else 0, largest_group=int(sizes.max()) if n else 0)
    return Grouping([label_name[label] for label in labels.tolist()], own, source, stats)


def _group_name(names: set[str]) -> str:
    first = min(names)
    return first if len(names) == 1 else f"{first}+{len(names) - 1}"

"""Reading and writing FASTA (plain or gzip), and what a header says: accession, gene and locus, from the header
styles users bring: NCBI (`>NM_000546.6 Homo sapiens ... (TP53), ... mRNA`), old NCBI
(`>gi|...|ref|NM_000546.6| Homo sapiens ... (TP53) ...`), GENCODE (`>ENST...|ENSG...|...|TP53|...`), Ensembl cDNA
(`>ENST... cdna chromosome:GRCh38:1:65419:71585:1 gene:ENSG... gene_symbol:OR4F5 ...`) and UCSC table exports
(`>hg19_..._NM_173083 range=chr1:226418850-226497204 ... strand=-`, no gene).

Sequences are read in pieces (`iter_fasta_pieces`), so a chromosome of any length costs a few MB, not its length."""

from __future__ import annotations

import gzip
import io
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

from .errors import UserError

LINE_WIDTH = 70
# Bytes read per step; a record's sequence arrives in pieces of about this size.
PIECE_BYTES = 1 << 22
_SPACE = b" \t\r\n"

_GENE_IN_PARENS = re.compile(r"\(([A-Za-z0-9][A-Za-z0-9._\-@/]*)\)")
_GI_REF = re.compile(r"^gi\|\d+\|(?:ref|gb|emb|dbj)\|([^|]+)\|")
_ENSEMBL_GENE = re.compile(r"(?:^|\s)gene:(\S+)")
_UCSC_RANGE = re.compile(r"(?:^|\s)range=([^\s:]+):(\d+)-(\d+)")
_UCSC_STRAND = re.compile(r"(?:^|\s)strand=([+-])")
_ENSEMBL_LOCUS = re.compile(r"(?:^|\s)(?:chromosome|scaffold):[^:\s]+:([^:\s]+):(\d+):(\d+):(-?1)")


@dataclass(frozen=True)
class Locus:
    """Where a transcript lies: chromosome, strand ('+' or '-') and 1-based inclusive start and end."""

    chrom: str
    strand: str
    start: int
    end: int


@dataclass(frozen=True)
class HeaderInfo:
    """What a header names: the accession, the gene (None when the header names none) and the locus (None when
    it gives none)."""

    accession: str
    gene: str | None
    locus: Locus | None


@dataclass
class FastaRecord:
    header: str  # the line after '>', without the newline
    sequence: str

    @property
    def accession(self) -> str:
        return parse_header(self.header)[0]

    @property
    def gene(self) -> str:
        return parse_header(self.header)[1]


def header_info(header: str) -> HeaderInfo:
    """Accession, gene and locus of a header; gene and locus are None where the header does not say."""
    header = header.strip()
    match = _GI_REF.match(header)
    if match:
        accession, rest = match.group(1), header[match.end():]
    elif "|" in header.split(" ", 1)[0]:
        fields = header.split("|")
        if len(fields) > 5 and fields[5]:
            return HeaderInfo(fields[0], fields[5], None)
        if len(fields) > 2 and fields[1].startswith("ENSG"):
            return HeaderInfo(fields[0], fields[1].split(".")[0], None)
        return HeaderInfo(fields[0], None, None)
    else:
        accession, _, rest = header.partition(" ")
    ensembl = _ENSEMBL_GENE.search(rest)
    if ensembl:
        gene: str | None = ensembl.group(1).split(".")[0]
    else:
        # The symbol is the last parenthesised word: descriptions carry their own, e.g.
        # "spinster homolog 1 (Drosophila) (SPNS1), transcript variant 3, mRNA".
        genes = _GENE_IN_PARENS.findall(rest)
        gene = genes[-1] if genes else None
    return HeaderInfo(accession, gene, _locus(rest))


def _locus(text: str) -> Locus | None:
    ucsc = _UCSC_RANGE.search(text)
    if ucsc:
        strand = _UCSC_STRAND.search(text)
        return Locus(ucsc.group(1), strand.group(1) if strand else "+", int(ucsc.group(2)), int(ucsc.group(3)))
    ensembl = _ENSEMBL_LOCUS.search(text)
    if ensembl:
        return Locus(ensembl.group(1), "+" if ensembl.group(4) == "1" else "-", int(ensembl.group(2)),
                     int(ensembl.group(3)))
    return None


def parse_header(header: str) -> tuple[str, str]:
    """Return (accession, gene) of a header. A header with no recognisable gene gets its accession without the
    version as gene (each such transcript its own gene; prepare groups them by locus or shared sequence)."""
    info = header_info(header)
    return info.accession, info.gene if info.gene is not None else info.accession.split(".")[0]


def open_binary(path: str | Path) -> IO[bytes]:
    """Open a plain or gzip-compressed file for reading bytes; the caller closes it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def open_text(path: str | Path) -> IO[str]:
    """Open a plain or gzip-compressed text file; the caller closes it."""
    return io.TextIOWrapper(open_binary(path), encoding="ascii", errors="strict")


def iter_fasta_pieces(path: str | Path, piece_bytes: int = PIECE_BYTES) -> Iterator[tuple[int, str, bytes]]:
    """(record number, header, sequence bytes without line breaks) in file order: a record's sequence comes in one
    or more consecutive pieces, so memory stays bounded whatever a record's length. An empty file, a file that is
    not FASTA, a record without a sequence and a truncated or corrupt .gz each raise a one-line UserError naming
    the file."""
    path = Path(path)
    try:
        with open_binary(path) as handle:
            yield from _pieces(handle, path, piece_bytes)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise UserError(f"{path}: truncated or corrupt gzip file ({exc}); download it again") from exc


def iter_fasta(path: str | Path) -> Iterator[FastaRecord]:
    """Yield whole records of a FASTA file (for files of transcripts; a genome is read with `iter_fasta_pieces`)."""
    yield from _records(iter_fasta_pieces(path))


def iter_fasta_text(text: str, source: str) -> Iterator[FastaRecord]:
    """Yield records of FASTA text held in memory (e.g. a server's response), with the same checks as `iter_fasta`;
    errors name `source`."""
    yield from _records(_pieces(io.BytesIO(text.encode("ascii", errors="replace")), source, PIECE_BYTES))


def _records(pieces: Iterator[tuple[int, str, bytes]]) -> Iterator[FastaRecord]:
    current, header, parts = -1, "", []
    for number, piece_header, piece in pieces:
        if number != current:
            if parts:
                yield FastaRecord(header, b"".join(parts).decode("ascii"))
            current, header, parts = number, piece_header, []
        parts.append(piece)
    if parts:
        yield FastaRecord(header, b"".join(parts).decode("ascii"))


def _pieces(handle: IO[bytes], source: str | Path, piece_bytes: int) -> Iterator[tuple[int, str, bytes]]:
    record, header, has_sequence = -1, None, False
    at_line_start, carry, seen = True, b"", 0
    while True:
        chunk = handle.read(piece_bytes)
        data = carry + chunk
        if not chunk:
            if not data:
                break
            data += b"\n"  # the last line may lack its newline
        carry, pos = b"", 0
        while pos < len(data):
            if at_line_start and data[pos] == 0x3E:  # '>': a header line, parsed once it is whole
                end = data.find(b"\n", pos)
                if end < 0:
                    carry = data[pos:]
                    break
                if header is not None and not has_sequence:
                    raise UserError(f"{source}: record '{header[:60]}' has no sequence")
                raw = data[pos + 1:end]
                if not raw.isascii():
                    raise UserError(f"{source}: not FASTA (binary content near byte {seen + pos})")
                header, has_sequence, record = raw.decode("ascii").strip(), False, record + 1
                pos, at_line_start = end + 1, True
                continue
            following = data.find(b"\n>", pos)
            stop = len(data) if following < 0 else following + 1
            text = data[pos:stop].translate(None, _SPACE)
            if text:
                if header is None:
                    first = pos + len(data[pos:stop]) - len(data[pos:stop].lstrip())
                    line = data[:first].count(b"\n") + 1 if not seen else "?"
                    raise UserError(f"{source}:{line}: not FASTA (the first non-empty line must start with '>')")
                if not text.isascii():
                    raise UserError(f"{source}: not FASTA (binary content near byte {seen + pos})")
                has_sequence = True
                yield record, header, text
            at_line_start = following >= 0 or data[stop - 1] == 0x0A
            pos = stop
        seen += len(data) - len(carry)
        if not chunk:
            break
    if header is None:
        raise UserError(f"{source}: empty file, no FASTA records")
    if not has_sequence:
        raise UserError(f"{source}: record '{header[:60]}' has no sequence")


def format_record(header: str, sequence: str, width: int = LINE_WIDTH) -> str:
    """A record as FASTA text with `width`-column sequence lines, ending in a newline."""
    lines = [f">{header}"]
    lines.extend(sequence[i:i + width] for i in range(0, len(sequence), width))
    return "\n".join(lines) + "\n"

"""Reading and writing FASTA (plain or gzip), and reading accession and gene from the header styles
users bring: NCBI (`>NM_000546.6 Homo sapiens ... (TP53), ... mRNA`), old NCBI
(`>gi|...|ref|NM_000546.6| Homo sapiens ... (TP53) ...`) and GENCODE (`>ENST...|ENSG...|...|TP53|...`)."""

from __future__ import annotations

import gzip
import io
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable, Iterator

from .errors import UserError

LINE_WIDTH = 70

_GENE_IN_PARENS = re.compile(r"\(([A-Za-z0-9][A-Za-z0-9._\-@/]*)\)")
_GI_REF = re.compile(r"^gi\|\d+\|(?:ref|gb|emb|dbj)\|([^|]+)\|")


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


def parse_header(header: str) -> tuple[str, str]:
    """Return (accession, gene) of a header. A header with no recognisable gene gets its accession
    without the version as gene, so each such transcript is its own gene (the safe choice for
    splitting: it can only under-merge isoforms, never leak one record into two splits)."""
    header = header.strip()
    match = _GI_REF.match(header)
    if match:
        accession = match.group(1)
        rest = header[match.end():]
    elif "|" in header.split(" ", 1)[0]:
        fields = header.split("|")
        accession = fields[0]
        if len(fields) > 5 and fields[5]:
            return accession, fields[5]
        if len(fields) > 2 and fields[1].startswith("ENSG"):
            return accession, fields[1].split(".")[0]
        return accession, accession.split(".")[0]
    else:
        accession, _, rest = header.partition(" ")
    # The symbol is the last parenthesised word: descriptions carry their own, e.g.
    # "spinster homolog 1 (Drosophila) (SPNS1), transcript variant 3, mRNA".
    genes = _GENE_IN_PARENS.findall(rest)
    gene = genes[-1] if genes else accession.split(".")[0]
    return accession, gene


def open_text(path: str | Path) -> IO[str]:
    """Open a plain or gzip-compressed text file; the caller closes it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="ascii", errors="strict")
    return open(path, encoding="ascii", errors="strict")


def iter_fasta(path: str | Path) -> Iterator[FastaRecord]:
    """Yield records of a FASTA file; an empty file, a file that is not FASTA, a record without a
    sequence and a truncated or corrupt .gz each raise a one-line UserError naming the file."""
    path = Path(path)
    try:
        with open_text(path) as handle:
            yield from _records(handle, path)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise UserError(f"{path}: truncated or corrupt gzip file ({exc}); download it again") from exc
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not FASTA (binary content at byte {exc.start})") from exc


def iter_fasta_text(text: str, source: str) -> Iterator[FastaRecord]:
    """Yield records of FASTA text held in memory (e.g. a server's response), with the same checks
    as `iter_fasta`; errors name `source`."""
    yield from _records(io.StringIO(text), source)


def _records(lines: Iterable[str], source: str | Path) -> Iterator[FastaRecord]:
    header: str | None = None
    chunks: list[str] = []
    line_no = 0
    for line_no, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith(">"):
            if header is not None:
                yield _finish(source, header, chunks, line_no)
            header, chunks = line[1:], []
        elif header is None:
            raise UserError(f"{source}:{line_no}: not FASTA (the first non-empty line must start with '>')")
        else:
            chunks.append(line)
    if header is None:
        raise UserError(f"{source}: empty file, no FASTA records")
    yield _finish(source, header, chunks, line_no + 1)


def _finish(path: str | Path, header: str, chunks: list[str], line_no: int) -> FastaRecord:
    sequence = "".join(chunks)
    if not sequence:
        raise UserError(f"{path}: record '{header[:60]}' (before line {line_no}) has no sequence")
    return FastaRecord(header=header, sequence=sequence)


def format_record(header: str, sequence: str, width: int = LINE_WIDTH) -> str:
    """A record as FASTA text with `width`-column sequence lines, ending in a newline."""
    lines = [f">{header}"]
    lines.extend(sequence[i:i + width] for i in range(0, len(sequence), width))
    return "\n".join(lines) + "\n"

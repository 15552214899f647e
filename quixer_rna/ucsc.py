"""Soft-masked chromosome FASTA files of a genome assembly from UCSC's download server (--source ucsc).

UCSC publishes one gzipped FASTA per sequence under <--ucsc_url><assembly>/chromosomes/ (chr1.fa.gz,
..., repeats in lowercase) with md5sum.txt beside them. md5sum.txt is also the list of what exists:
without --chromosomes the download takes the assembled chromosomes, the names without '_' (hg38:
chr1-22, chrX, chrY, chrM), and leaves out alternate haplotypes (_alt) and fix patches (_fix), which
repeat stretches of the primary sequence (a region split could put one copy in train and another in
test), and unlocalised or unplaced contigs (_random, chrUn_), which are short, repeat-rich pieces.
`--chromosomes all` takes every file listed.

The output is a folder holding the files exactly as published (`prepare_autoregressive_data.py
--fasta DIR/*.fa.gz` reads them), a md5sum.txt of them (`md5sum -c` checks them again) and the run
record. Each file grows as NAME.part, continued with an HTTP Range request (If-Range: the server's
ETag, so a file changed since cannot be spliced) after a dropped connection or a killed run. A
finished part is checked against md5sum.txt (or, where none is published, by reading it through
gzip's CRC); a mismatch deletes it and fetches it once more, a second is a one-line error. Only
then is it renamed into place, so a NAME.fa.gz in the folder is always whole and checked.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import os
import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.request import Request

from .download import STAGE, check_same_run
from .errors import UserError
from .http_fetch import RETRY_REASONS, FetchFailure, HttpClient, RetryPolicy, check_url
from .progress import Every, Progress
from .runio import atomic_write_json, atomic_write_text, read_json
from .stage import StageRun, stage_run

LOG = logging.getLogger(__name__)

UCSC_URL = "https://hgdownload.soe.ucsc.edu/goldenPath/"
CHECKSUMS = "md5sum.txt"
SUFFIX = ".fa.gz"
PART = ".part"  # chr21.fa.gz.part: the bytes received so far
VALIDATOR = ".part.json"  # chr21.fa.gz.part.json: the ETag / Last-Modified of the answer the part came from
CHUNK = 1 << 20
FASTA_NAMES = (".fa", ".fasta", ".fna", ".gz")

_ASSEMBLY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_MD5_LINE = re.compile(r"^([0-9a-fA-F]{32}) [ *](\S.*)$")
_CONTENT_RANGE = re.compile(r"^bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)$")


@dataclass(frozen=True)
class UcscConfig:
    """What `--source ucsc` takes (the flags of the same names, parsed once by the script)."""

    assembly: str
    chromosomes: str | None  # None: the assembled chromosomes; "all"; or "chr21,chr22"
    output: str
    ucsc_url: str
    overwrite: bool
    seed: int
    log_every: Every
    network: RetryPolicy


def parse_md5sums(text: str, source: str) -> dict[str, str]:
    """md5sum.txt (`<md5>  <file>` a line, as GNU md5sum writes it) -> {file: md5} of the .fa.gz files."""
    sums: dict[str, str] = {}
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _MD5_LINE.match(line.strip())
        if match is None:
            raise UserError(f"{source}:{line_no}: expected '<md5>  <file>', found {line.strip()[:60]!r}")
        name = match.group(2).strip()
        if name.endswith(SUFFIX):
            sums[name] = match.group(1).lower()
    return sums


def natural_key(name: str) -> list[Any]:
    """chr2 before chr10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def named_chromosomes(chromosomes: str) -> list[str]:
    """--chromosomes chr21,chr22 as names, each once, in the order given."""
    names = list(dict.fromkeys(part.strip() for part in chromosomes.split(",") if part.strip()))
    bad = [name for name in names if not _NAME.match(name) or name.endswith(SUFFIX)]
    if not names or bad:
        raise UserError(f"--chromosomes {chromosomes}: expected sequence names such as chr21,chr22 (or 'all')")
    return names


def choose(listed: dict[str, str] | None, chromosomes: str | None, assembly: str, folder_url: str) -> list[str]:
    """The sequence names to fetch: named ones (each must be listed where a list is published), every listed
    one ("all"), or by default the assembled chromosomes (names without '_')."""
    where = f"{folder_url}{CHECKSUMS}"
    if chromosomes is not None and chromosomes.strip() != "all":
        names = named_chromosomes(chromosomes)
        unknown = [name for name in names if listed is not None and name + SUFFIX not in listed]
        if unknown:
            hint = f"; did you mean chr{unknown[0]}?" if f"chr{unknown[0]}{SUFFIX}" in (listed or {}) else ""
            examples = ", ".join(sorted((n[:-len(SUFFIX)] for n in listed or {}), key=natural_key)[:4])
            raise UserError(f"--chromosomes {','.join(unknown)}: not published for {assembly} ({where} lists "
                            f"{len(listed or {})} files: {examples}, ...){hint}")
        return names
    if listed is None:
        raise UserError(f"--assembly {assembly}: {where} not found, so the chromosomes cannot be listed; check the "
                        "assembly name (e.g. hg38, hg19, mm39) or name the files with --chromosomes")
    names = [name[:-len(SUFFIX)] for name in listed]
    if chromosomes is None:
        names = [name for name in names if "_" not in name]
    return sorted(names, key=natural_key)


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)  # a checksum, not security: allowed on FIPS systems too
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def gzip_problem(path: Path) -> str | None:
    """Read a .gz through to its end (gzip's CRC-32 and length check every member); what is wrong, or None."""
    try:
        with gzip.open(path, "rb") as handle:
            while handle.read(CHUNK):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        return f"not a whole gzip file ({exc})"
    return None


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a Content-Range header; None where it does not say."""
    match = _CONTENT_RANGE.match((value or "").strip())
    if match is None:
        return None, None
    first = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(3)) if match.group(3) != "*" else None
    return first, total


class ChromosomeFiles:
    """Brings published files into the output folder one by one (see the module docstring) and counts
    what it did."""

    def __init__(self, http: HttpClient, folder: Path, folder_url: str, md5: dict[str, str], log_every: Every):
        self.http, self.folder, self.folder_url, self.md5, self.log_every = http, folder, folder_url, md5, log_every
        self.present = self.fetched = self.resumed = self.restarted = self.breaks = self.mismatches = 0
        self.bytes_resumed = 0

    def get(self, name: str) -> Path:
        """NAME.fa.gz in the folder, whole and checked; fetched or finished only where needed."""
        target = self.folder / f"{name}{SUFFIX}"
        part, meta = target.with_name(target.name + PART), target.with_name(target.name + VALIDATOR)
        want = self.md5.get(target.name)
        if target.is_file():
            if want is None or file_md5(target) == want:
                part.unlink(missing_ok=True)
                meta.unlink(missing_ok=True)
                self.present += 1
                return target
            LOG.warning("%s: md5 differs from %s%s; fetching it again", target, self.folder_url, CHECKSUMS)
            target.unlink()
        url = f"{self.folder_url}{target.name}"
        for round_ in (1, 2):
            while not self.http.call(url, lambda: self._attempt(name, url, part, meta)):
                pass  # the connection ended early with bytes received: continue from there, retries afresh
            problem = self._check(part, want)
            if problem is None:
                break
            self.mismatches += 1
            part.unlink()
            meta.unlink(missing_ok=True)
            if round_ == 2:
                raise UserError(f"{url}: {problem}, again after deleting it and fetching it once more; the copy on the "
                                "server or the connection is damaged: try later, or another --ucsc_url")
            LOG.warning("%s: %s; deleted it, fetching it once more", url, problem)
        with open(part, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(part, target)
        _fsync_folder(self.folder)
        meta.unlink(missing_ok=True)
        self.fetched += 1
        return target

    def _check(self, part: Path, want: str | None) -> str | None:
        if want is None:
            return gzip_problem(part)
        got = file_md5(part)
        return None if got == want else f"md5 {got} is not the {want} of {CHECKSUMS}"

    def _attempt(self, name: str, url: str, part: Path, meta: Path) -> bool:
        """One request: True when the part then holds the whole file, False when the connection ended early
        after some bytes (the caller continues); FetchFailure when it may pass on a retry."""
        offset = before = part.stat().st_size if part.is_file() else 0
        headers = {}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            validator = _read_validator(meta)
            if validator:
                headers["If-Range"] = validator
        try:
            response = self.http.open(Request(url, headers=headers))
        except HTTPError as exc:
            return self._refused(exc, name, url, part, meta, offset)
        with response:
            if response.status == 206:
                first, total = _content_range(response.headers.get("Content-Range"))
                if first != offset:
                    got = response.headers.get("Content-Range")
                    raise FetchFailure("bad_response", f"asked for bytes from {offset}, got {got!r}")
                mode = "ab"
                self.resumed += 1
                self.bytes_resumed += offset
            else:  # the whole file: first request, a server ignoring Range, or a file changed since the part began
                if offset:
                    LOG.warning("%s: the server sent the whole file again (changed since the part began?); "
                                "restarting", url)
                    self.restarted += 1
                offset, length = 0, response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                mode = "wb"
            received = 0
            with open(part, mode) as handle:
                if mode == "wb":  # the part is emptied before its new validator is written (see _read_validator)
                    _write_validator(meta, response.headers)
                with Progress(total or 0, name, unit="byte", initial=offset, every=self.log_every) as progress:
                    while chunk := response.read1(CHUNK):  # what has arrived: the part grows as bytes come
                        handle.write(chunk)
                        received += len(chunk)
                        self.http.received += len(chunk)
                        progress.update(len(chunk))
        if total is None or offset + received == total:
            return True
        if offset + received > before:  # progress (a restarted file must pass its old size): retries afresh
            self.breaks += 1
            LOG.warning("%s: connection ended after %d of %d bytes; continuing from there", url, offset + received,
                        total)
            return False
        raise FetchFailure("dropped", f"connection closed after {offset + received} of {total} bytes")

    def _refused(self, exc: HTTPError, name: str, url: str, part: Path, meta: Path, offset: int) -> bool:
        if exc.code == 416 and offset:
            if _content_range(exc.headers.get("Content-Range"))[1] == offset:
                return True  # the part already holds the whole file (a run killed before its check)
            LOG.warning("%s: the part (%d bytes) does not fit the file on the server; restarting it", url, offset)
            part.unlink()
            meta.unlink(missing_ok=True)
            self.restarted += 1
            return False
        if exc.code == 404:
            raise UserError(f"--chromosomes {name}: {url} not found (HTTP 404); check the name and --assembly")
        raise UserError(f"{url}: HTTP {exc.code} {exc.reason}; check --ucsc_url") from exc


def _write_validator(meta: Path, headers: Any) -> None:
    atomic_write_json(meta, {"etag": headers.get("ETag"), "last_modified": headers.get("Last-Modified")})


def _read_validator(meta: Path) -> str | None:
    """What If-Range sends: a strong ETag, else Last-Modified. The part is always emptied before a new
    validator is written, so a part's bytes never come from a newer answer than its validator."""
    try:
        saved = read_json(meta)
    except UserError:
        return None
    etag = saved.get("etag") if isinstance(saved, dict) else None
    if etag and not etag.startswith("W/"):
        return etag
    return saved.get("last_modified") if isinstance(saved, dict) else None


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fetch_checksums(http: HttpClient, folder_url: str) -> dict[str, str] | None:
    """The assembly's md5sum.txt as {file: md5}; None where the server publishes none (HTTP 404)."""
    url = f"{folder_url}{CHECKSUMS}"

    def attempt() -> dict[str, str] | None:
        try:
            with http.open(Request(url)) as response:
                data = response.read()
        except HTTPError as exc:
            if exc.code == 404:
                return None
            raise UserError(f"{url}: HTTP {exc.code} {exc.reason}; check --ucsc_url") from exc
        http.received += len(data)
        return parse_md5sums(data.decode("utf-8", errors="replace"), url)

    return http.call(url, attempt)


def run_ucsc(config: UcscConfig, record: dict[str, Any]) -> int:
    """Fetch the chosen chromosome files of config.assembly into the folder config.output, finishing what an
    earlier run left; `record` is what the run record keeps as the run's arguments."""
    started = time.monotonic()
    base_url = check_url(config.ucsc_url, "--ucsc_url", UCSC_URL)
    if not _ASSEMBLY.match(config.assembly or ""):
        raise UserError(f"--assembly {config.assembly}: expected a UCSC assembly name such as hg38, hg19 or mm39")
    output = Path(config.output)
    if output.name.endswith(FASTA_NAMES) and not output.is_dir():
        raise UserError(f"--output {output}: with --source ucsc give a folder; one .fa.gz per chromosome is written "
                        f"into it (e.g. genomes/{config.assembly})")
    if config.chromosomes is not None and config.chromosomes.strip() != "all":
        named_chromosomes(config.chromosomes)  # a malformed list fails before any request
    folder_url = f"{base_url}{config.assembly}/chromosomes/"
    with stage_run(output, STAGE, record, role="download", overwrite=config.overwrite, flag="--output",
                   completed="rerun") as run:
        check_same_run(run, output, config.overwrite, {"source": "ucsc", "assembly": config.assembly})
        http = HttpClient(base_url, config.network, seed=config.seed, offline_hint="check the network or --ucsc_url")
        return _download(config, run, http, output, folder_url, started)


def _download(config: UcscConfig, run: StageRun, http: HttpClient, output: Path, folder_url: str,
              started: float) -> int:
    listed = fetch_checksums(http, folder_url)
    names = choose(listed, config.chromosomes, config.assembly, folder_url)
    if listed is None:
        LOG.warning("%s%s not found: each file is checked by gzip's CRC only", folder_url, CHECKSUMS)
    if config.overwrite:
        for name in names:
            for suffix in (SUFFIX, SUFFIX + PART, SUFFIX + VALIDATOR):
                (output / f"{name}{suffix}").unlink(missing_ok=True)
    files = ChromosomeFiles(http, output, folder_url, listed or {}, config.log_every)
    done: list[Path] = []

    def metrics() -> dict:
        seconds = time.monotonic() - started
        return {
            "synthetic": False,
            "source": "ucsc",
            "assembly": config.assembly,
            "url": folder_url,
            "checked_by": CHECKSUMS if listed is not None else "gzip CRC (no md5sum.txt published)",
            "selection": config.chromosomes or "assembled chromosomes (names without '_')",
            "files_requested": len(names),
            "already_present": files.present,
            "fetched": files.fetched,
            "resumed_by_range": files.resumed,
            "bytes_resumed_from": files.bytes_resumed,
            "connection_breaks": files.breaks,
            "restarted": files.restarted,
            "checksum_mismatches": files.mismatches,
            "requests": http.requests,
            "retries": {reason: http.retries[reason] for reason in RETRY_REASONS},
            "bytes_received": http.received,
            "bytes_in_output": sum(path.stat().st_size for path in done),
            "seconds": round(seconds, 3),
            "bytes_per_second": round(http.received / seconds) if seconds > 0 else None,
            "files": {path.name: (listed or {}).get(path.name) for path in done},
        }

    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    LOG.info("%s: %d files (%s) into %s", folder_url, len(names), shown, output)
    try:
        for name in names:
            done.append(files.get(name))
        if listed is not None:
            present = sorted((p.name for p in output.glob(f"*{SUFFIX}") if p.name in listed), key=natural_key)
            atomic_write_text(output / CHECKSUMS, "".join(f"{listed[name]}  {name}\n" for name in present))
    except BaseException:
        with contextlib.suppress(OSError):
            atomic_write_json(run.place.metrics_path, metrics())
        raise
    result = metrics()
    run.finish(result)
    LOG.info("%d files in %s (%d fetched, %d already there), %d bytes received; prepare them with "
             "prepare_autoregressive_data.py --fasta %s/*%s", len(done), output, files.fetched, files.present,
             http.received, output, SUFFIX)
    return 0

"""RefSeq transcripts from NCBI E-utilities: which ids to fetch (NCBI's RNA summary CSV), an efetch
client, and the fetch loop that grows the FASTA batch by batch (quixer_rna.download keeps it whole
across crashes).

The client speaks E-utilities over plain HTTP (quixer_rna.http_fetch) at an injectable base address
(--eutils_url: NCBI, a mirror, or the tests' local server), within NCBI's rate limit (3 requests/s
without an API key, 10 with one), retrying HTTP 429, 5xx, timeouts and dropped connections with
exponential backoff. Biopython's Entrez is not used: it would resend at once after a 429 and cannot
be pointed at another address (see http_fetch).

A batch is fetched whole into memory, checked (every requested accession.version present, each
sequence as long as the CSV says), then appended with one write + flush + fsync, so a rerun of the
same command loses nothing and fetches no id twice.

Why one module of ~410 lines: the summary CSV, the E-utilities client and the resumable fetch loop are the
RefSeq source end to end; the HTTP layer itself is already apart (quixer_rna.http_fetch).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import logging
import os
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from urllib.error import HTTPError
from urllib.parse import urlencode
from urllib.request import Request

from .download import (MISSING_FILE, STAGE, FastaAppender, accessions_in, check_output, check_same_run,
                       read_missing, repair_tail)
from .errors import UserError
from .fasta import FastaRecord, iter_fasta_text, parse_header
from .http_fetch import RETRY_REASONS, FetchFailure, HttpClient, RateLimiter, RetryPolicy, check_url
from .progress import Every, Progress
from .runio import atomic_write_json, atomic_write_text
from .stage import StageRun, stage_run

LOG = logging.getLogger(__name__)

NCBI_EUTILS = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/"
DEFAULT_PREFIXES = ("NM_",)
NCBI_RATE_LIMIT = 3.0
NCBI_RATE_LIMIT_WITH_KEY = 10.0
TOOL = "quixer-rna"  # the `tool` parameter NCBI asks every request to carry
# NCBI asks for POST above about 200 ids; a long query string is posted too (URLs over ~2 kB may be cut).
POST_FROM_IDS = 200
POST_FROM_QUERY_CHARS = 1000

_PREFIX = re.compile(r"^[A-Z]{2}_$")
_SEQUENCE = re.compile(r"^[ACGTUNRYKMSWBDHVacgtunrykmswbdhv]+$")
_RECORD_START = re.compile(r"^>", re.MULTILINE)


@dataclass(frozen=True)
class NcbiConfig:
    """What `--source ncbi` takes (the flags of the same names, parsed once by the script)."""

    csv: str
    output: str
    prefixes: Sequence[str]
    max_sequences: int | None
    sample: bool
    seed: int
    email: str | None
    api_key: str | None
    batch_size: int
    requests_per_second: float | None
    eutils_url: str
    overwrite: bool
    log_every: Every
    network: RetryPolicy


@dataclass(frozen=True)
class Transcript:
    """One row of the summary CSV: the id to fetch and the length NCBI says its sequence has."""

    accession: str
    length: int | None


# ---------------------------------------------------------------- which ids


def parse_prefixes(values: Sequence[str]) -> tuple[str, ...]:
    """--prefixes takes 'NM_ XM_' or 'NM_,XM_'; each must look like an accession class."""
    prefixes = tuple(part.strip() for value in values for part in value.split(",") if part.strip())
    bad = [p for p in prefixes if not _PREFIX.match(p)]
    if not prefixes or bad:
        raise UserError(f"--prefixes {' '.join(values)}: expected accession classes such as NM_ XM_ NR_ XR_")
    return prefixes


def read_summary_csv(path: str | os.PathLike, prefixes: Sequence[str]) -> list[Transcript]:
    """Rows of NCBI's GRCh38_latest_rna_summary.csv (plain or .gz) whose ID has one of `prefixes`,
    in file order, each id once."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--csv {path}: file not found; give NCBI's GRCh38_latest_rna_summary.csv or pass --source synthetic")
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    opener = gzip.open if gzipped else open
    rows: list[Transcript] = []
    seen: set[str] = set()
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            names = [name.strip().lstrip("#").strip() for name in (header or [])]
            if names[:2] != ["ID", "Sequence_len"]:
                found = ",".join(header or [])[:80]
                raise UserError(f"--csv {path}: expected the header 'ID,Sequence_len,Description', found {found!r}")
            for line_no, row in enumerate(reader, start=2):
                if not row or not row[0].strip():
                    continue
                accession = row[0].strip()
                if not accession.startswith(tuple(prefixes)) or accession in seen:
                    continue
                rows.append(Transcript(accession, _row_length(path, line_no, row)))
                seen.add(accession)
    except (UnicodeDecodeError, OSError, csv.Error) as exc:
        raise UserError(f"--csv {path}: cannot read it as CSV ({exc})") from exc
    if not rows:
        raise UserError(f"--csv {path}: no row whose ID starts with {' or '.join(prefixes)}; check --prefixes")
    return rows


def _row_length(path: Path, line_no: int, row: list[str]) -> int | None:
    if len(row) < 2 or not row[1].strip():
        return None
    try:
        return int(row[1])
    except ValueError as exc:
        raise UserError(f"--csv {path}:{line_no}: Sequence_len {row[1]!r} is not a whole number") from exc


def select_transcripts(rows: list[Transcript], max_sequences: int | None, sample: bool, seed: int) -> list[Transcript]:
    """The first `max_sequences` rows, or a seeded random sample of them kept in file order.

    The sample is a prefix of one seeded shuffle, so a larger --max_sequences with the same seed
    contains the smaller one and a resumed run can grow a download without refetching."""
    if max_sequences is None or max_sequences >= len(rows):
        return list(rows)
    if not sample:
        return rows[:max_sequences]
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    return [rows[i] for i in sorted(order[:max_sequences])]


# ---------------------------------------------------------------- talking to NCBI


class EutilsClient:
    """efetch of nuccore FASTA, with the parameters NCBI asks of every request (tool, email, api_key);
    `http` rate-limits, retries and counts."""

    def __init__(self, http: HttpClient, email_address: str | None, api_key: str | None):
        self.http = http
        self.email = email_address
        self.api_key = api_key

    @property
    def base_url(self) -> str:
        return self.http.base_url

    def efetch(self, ids: Sequence[str]) -> list[FastaRecord]:
        """The records NCBI returns for `ids` (possibly fewer than asked, or none when it rejects them)."""
        what = f"{self.base_url}efetch.fcgi for a batch of {len(ids)} ids"
        return self.http.call(what, lambda: self._efetch_once(ids))

    def _request(self, utility: str, params: dict[str, str]) -> Request:
        params = {**params, "tool": TOOL}
        if self.email:
            params["email"] = self.email
        if self.api_key:
            params["api_key"] = self.api_key
        query = urlencode(params)
        url = f"{self.base_url}{utility}"
        if params.get("id", "").count(",") + 1 >= POST_FROM_IDS or len(query) > POST_FROM_QUERY_CHARS:
            return Request(url, data=query.encode("ascii"), method="POST")
        return Request(f"{url}?{query}", method="GET")

    def _efetch_once(self, ids: Sequence[str]) -> list[FastaRecord]:
        request = self._request("efetch.fcgi", {"db": "nuccore", "id": ",".join(ids), "rettype": "fasta",
                                                "retmode": "text"})
        try:
            with self.http.open(request) as response:
                data = response.read()
        except HTTPError as exc:
            return self._rejected(exc)
        self.http.received += len(data)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FetchFailure("bad_response", f"answer is not text ({exc})") from exc
        return self._parse(text)

    def _rejected(self, exc: HTTPError) -> list[FastaRecord]:
        """A 4xx other than 429: NCBI knows none of the ids (no records), or refuses the API key (a UserError:
        retrying cannot help)."""
        try:
            body = exc.read().decode("utf-8", errors="replace")
        except OSError:
            body = ""
        if "api key" in body.lower() or "api_key" in body.lower():
            raise UserError(f"--api_key: NCBI rejected it (HTTP {exc.code} {exc.reason}); check the key or leave it out")
        LOG.debug("NCBI rejected the ids (HTTP %s: %s)", exc.code, body.strip()[:200])
        return []

    def _parse(self, text: str) -> list[FastaRecord]:
        """FASTA records of an answer; an answer with no record is NCBI saying it has none of the ids,
        unless it is an HTML or JSON page (a proxy or an overloaded server), which is retried."""
        start = _RECORD_START.search(text)
        if start is None:
            if text.lstrip().startswith(("<", "{")):
                raise FetchFailure("bad_response", f"answer is not FASTA ({text.strip()[:80]!r})")
            if text.strip():
                LOG.debug("NCBI returned no records: %s", text.strip()[:200])
            return []
        try:
            records = list(iter_fasta_text(text[start.start():], f"{self.base_url}efetch.fcgi"))
        except UserError as exc:
            raise FetchFailure("bad_response", str(exc)) from exc
        garbled = [r.header for r in records if not _SEQUENCE.match(r.sequence)]
        if garbled:
            raise FetchFailure("bad_response", f"non-nucleotide letters in the sequence of {garbled[0][:60]!r}")
        return records


def match_records(ids: Sequence[str], records: list[FastaRecord],
                  expected_length: dict[str, int | None]) -> tuple[dict[str, FastaRecord], dict[str, str]]:
    """Pair requested ids with returned records by accession.version; an id without a record, or whose
    sequence length differs from the CSV's (a cut-off answer), is a problem with its reason."""
    by_accession: dict[str, FastaRecord] = {}
    for record in records:
        accession = parse_header(record.header)[0]
        by_accession.setdefault(accession, record)
        by_accession.setdefault(accession.split(".")[0], record)
    found: dict[str, FastaRecord] = {}
    problems: dict[str, str] = {}
    for accession in ids:
        record = by_accession.get(accession)
        want = expected_length.get(accession)
        if record is None:
            problems[accession] = "not_returned"
        elif want is not None and len(record.sequence) != want:
            problems[accession] = "length_mismatch"
            LOG.warning("%s: NCBI returned %d nt, the CSV says %d", accession, len(record.sequence), want)
        else:
            found[accession] = record
    return found, problems



# ---------------------------------------------------------------- the fetch loop


class Download:
    """One run's fetch loop: stores each batch as soon as it is complete, re-asks the ids a batch
    lacked one by one (a single bad id can make NCBI reject a whole batch), then records the ids
    still missing in missing_ids.txt so no later run asks for them again."""

    def __init__(self, client: EutilsClient, appender: FastaAppender, missing_path: Path,
                 missing: list[str], expected_length: dict[str, int | None]):
        self.client = client
        self.appender = appender
        self.missing_path = missing_path
        self.missing = missing
        self.expected_length = expected_length
        self.fetched = 0
        self.reasks = 0
        self.bytes_written = 0
        self.new_missing: dict[str, str] = {}

    def run_batch(self, batch: Sequence[str]) -> None:
        found, problems = match_records(batch, self.client.efetch(batch), self.expected_length)
        self._store([found[a] for a in batch if a in found])
        if len(batch) > 1:
            for accession in list(problems):
                self.reasks += 1
                more, again = match_records([accession], self.client.efetch([accession]), self.expected_length)
                if accession in more:
                    self._store([more[accession]])
                    del problems[accession]
                else:
                    problems[accession] = again[accession]
        if problems:
            LOG.warning("NCBI did not return %s", ", ".join(f"{a} ({why})" for a, why in problems.items()))
            self.new_missing.update(problems)
            self.missing.extend(a for a in batch if a in problems)
            atomic_write_text(self.missing_path, "".join(f"{a}\n" for a in self.missing))

    def _store(self, records: list[FastaRecord]) -> None:
        if records:
            self.bytes_written += self.appender.append(records)
            self.fetched += len(records)


# ---------------------------------------------------------------- the stage


def run_ncbi(config: NcbiConfig, record: dict[str, Any]) -> int:
    """Fetch the selected RefSeq transcripts into config.output, resuming a previous run; `record` is what
    the run record keeps as the run's arguments."""
    started = time.monotonic()
    base_url = check_url(config.eutils_url, "--eutils_url", NCBI_EUTILS)
    prefixes = parse_prefixes(config.prefixes)
    rows = read_summary_csv(config.csv, prefixes)
    selection = select_transcripts(rows, config.max_sequences, config.sample, config.seed)
    fasta = Path(config.output)
    check_output(fasta)
    same_run: dict[str, object] = {"source": "ncbi", "csv": config.csv, "prefixes": list(prefixes),
                                   "sample": config.sample, "output": config.output}
    if config.sample:
        same_run["seed"] = config.seed
    with stage_run(fasta, STAGE, record, role="download", overwrite=config.overwrite, flag="--output",
                   single_file=True, completed="rerun") as run:
        check_same_run(run, fasta, config.overwrite, same_run)
        return _download(config, run, fasta, selection, rows, prefixes, base_url, started)


def _download(config: NcbiConfig, run: StageRun, fasta: Path, selection: list[Transcript],
              rows: list[Transcript], prefixes: tuple[str, ...], base_url: str, started: float) -> int:
    expected_length = {t.accession: t.length for t in selection}
    missing_path = run.place.named(MISSING_FILE)
    if config.overwrite:
        fasta.unlink(missing_ok=True)
        missing_path.unlink(missing_ok=True)
    repaired = repair_tail(fasta, expected_length) if fasta.is_file() else 0
    present = accessions_in(fasta)
    missing = read_missing(missing_path)
    known_missing = set(missing)
    n_present = sum(1 for t in selection if t.accession in present)
    n_known_missing = sum(1 for t in selection if t.accession in known_missing)
    todo = [t.accession for t in selection if t.accession not in present and t.accession not in known_missing]

    email_address = config.email or os.environ.get("NCBI_EMAIL") or None
    api_key = config.api_key or os.environ.get("NCBI_API_KEY") or None
    if not email_address:
        LOG.warning("no --email (or NCBI_EMAIL): NCBI asks for one so it can contact heavy users before blocking them")
    limit = NCBI_RATE_LIMIT_WITH_KEY if api_key else NCBI_RATE_LIMIT
    per_second = config.requests_per_second or limit
    if base_url == NCBI_EUTILS and per_second > limit:
        LOG.warning("--requests_per_second %s is above NCBI's limit of %s/s; expect HTTP 429", per_second, limit)

    http = HttpClient(base_url, config.network, limiter=RateLimiter(per_second), seed=config.seed,
                      offline_hint="pass --source synthetic to work offline")
    client = EutilsClient(http, email_address, api_key)
    appender = FastaAppender(fasta)
    download = Download(client, appender, missing_path, missing, expected_length)

    def metrics() -> dict:
        seconds = time.monotonic() - started
        return {
            "synthetic": False,
            "source": "ncbi",
            "eutils_url": base_url,
            "csv_rows_matching_prefixes": len(rows),
            "requested": len(selection),
            "already_present": n_present,
            "already_missing": n_known_missing,
            "to_fetch": len(todo),
            "fetched": download.fetched,
            "missing": len(download.new_missing),
            "missing_by_reason": dict(Counter(download.new_missing.values())),
            "missing_total": len(missing),
            "records_in_fasta": len(present) + download.fetched,
            "tail_bytes_repaired": repaired,
            "requests": http.requests,
            "individual_reasks": download.reasks,
            "retries": {reason: http.retries[reason] for reason in RETRY_REASONS},
            "bytes_received": http.received,
            "bytes_written": download.bytes_written,
            "seconds": round(seconds, 3),
            "ids_per_second": round(download.fetched / seconds, 3) if seconds > 0 else None,
            "requests_per_second_limit": per_second,
            "batch_size": config.batch_size,
        }

    LOG.info("%d ids selected (%s): %d already in %s, %d listed in %s; fetching %d",
             len(selection), " ".join(prefixes), n_present, fasta, n_known_missing, missing_path, len(todo))
    try:
        report = lambda: {"sequences": len(present) + download.fetched, "missing": len(missing)}  # noqa: E731
        with Progress(len(todo), "efetch", unit="id", every=config.log_every, report=report) as progress:
            for begin in range(0, len(todo), config.batch_size):
                batch = todo[begin:begin + config.batch_size]
                download.run_batch(batch)
                progress.update(len(batch))
    except BaseException:
        # The run record says how it ended (quixer_rna.stage); what was fetched so far is kept beside it.
        with contextlib.suppress(OSError):
            atomic_write_json(run.place.metrics_path, metrics())
        raise
    finally:
        appender.close()
    result = metrics()
    run.finish(result)
    LOG.info("fetched %d, %d missing (see %s), %d requests, %s ids/s; %s holds %d records",
             result["fetched"], result["missing"], missing_path, result["requests"], result["ids_per_second"],
             fasta, result["records_in_fasta"])
    return 0

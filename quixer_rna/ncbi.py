"""RefSeq transcripts from NCBI E-utilities: which ids to fetch (NCBI's RNA summary CSV), a rate
limiter, an Entrez client with its own retries, and a FASTA writer that resumes and survives crashes.

A batch is fetched whole into memory, checked (every requested accession.version present, each
sequence as long as the CSV says), then appended with one write + flush + fsync. A run killed during
that write leaves at most one partial record at the end of the file, which the next start cuts off,
so a rerun of the same command loses nothing and fetches no id twice.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import email.utils
import gzip
import http.client
import logging
import os
import random
import re
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence
from urllib.error import HTTPError, URLError

from .errors import UserError
from .progress import Progress
from .fasta import FastaRecord, format_record, iter_fasta, iter_fasta_text, parse_header
from .runio import atomic_write_json, atomic_write_text
from .stage import StageRun, stage_run

LOG = logging.getLogger(__name__)

STAGE = "download_rna_sequences"
NCBI_EUTILS = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/"
MISSING_FILE = "missing_ids.txt"  # beside the FASTA, named after it: rna.fasta.missing_ids.txt
DEFAULT_PREFIXES = ("NM_",)
NCBI_RATE_LIMIT = 3.0
NCBI_RATE_LIMIT_WITH_KEY = 10.0
RETRY_REASONS = ("http_429", "http_5xx", "timeout", "dropped", "connection", "bad_response")

_PREFIX = re.compile(r"^[A-Z]{2}_$")
_SEQUENCE = re.compile(r"^[ACGTUNRYKMSWBDHVacgtunrykmswbdhv]+$")
_RECORD_START = re.compile(r"^>", re.MULTILINE)


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


class RateLimiter:
    """Spaces request starts at least 1.1/per_second apart, so no second holds more than the limit.
    The 10% margin is there because NCBI counts arrivals, and network jitter can bring two requests
    closer together than they left (Biopython keeps a similar margin: 0.37 s for 3/s)."""

    MARGIN = 1.1

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if per_second <= 0:
            raise UserError(f"--requests_per_second {per_second}: must be positive")
        self.interval = self.MARGIN / per_second
        self._clock = clock
        self._sleep = sleep
        self._last: float | None = None

    def wait(self) -> None:
        now = self._clock()
        if self._last is not None and now < self._last + self.interval:
            self._sleep(self._last + self.interval - now)
            now = self._clock()
        self._last = now


@contextlib.contextmanager
def entrez_session(base_url: str, email_address: str | None, api_key: str | None, timeout: float) -> Iterator[None]:
    """Configure Bio.Entrez for this run and restore its module state afterwards.

    Biopython 1.88 hard-codes NCBI's address inside each function (efetch builds its Request from a
    literal URL) and calls urlopen without a timeout; the one seam both pass through is the
    module-level `urlopen` that `Entrez._open` calls. We replace it, for the duration, by one that
    moves the request to `base_url` and applies `timeout`. `max_tries = 1` leaves retries to us:
    Biopython's own retry would resend at once on HTTP errors."""
    from Bio import Entrez

    names = ("email", "api_key", "tool", "max_tries", "urlopen")
    saved = {name: getattr(Entrez, name) for name in names}
    opener = saved["urlopen"]

    def routed_urlopen(request):  # noqa: ANN001 - urllib's Request
        if request.full_url.startswith(NCBI_EUTILS):
            request.full_url = base_url + request.full_url[len(NCBI_EUTILS):]
        return opener(request, timeout=timeout)

    Entrez.email, Entrez.api_key, Entrez.tool, Entrez.max_tries = email_address, api_key, "quixer-rna", 1
    Entrez.urlopen = routed_urlopen
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"\s*Email address is not specified", category=UserWarning)
            yield
    finally:
        for name, value in saved.items():
            setattr(Entrez, name, value)


class FetchFailure(Exception):
    """A request that may succeed when tried again; `reason` is one of RETRY_REASONS."""

    def __init__(self, reason: str, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either seconds or an HTTP date; anything else is ignored."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random, retry_after: float | None = None) -> float:
    """Exponential backoff base*2^attempt, up to 25% jitter on top, capped; never shorter than the
    server's Retry-After."""
    delay = min(cap, base * 2**attempt * (1.0 + 0.25 * rng.random()))
    return max(delay, retry_after or 0.0)


class EntrezClient:
    """efetch of nuccore FASTA through Bio.Entrez, rate-limited, retried with backoff on 429, 5xx,
    timeouts, dropped connections and garbled answers; counts what it did."""

    def __init__(self, base_url: str, limiter: RateLimiter, max_retries: int, base_delay: float,
                 max_delay: float, seed: int, sleep: Callable[[float], None] = time.sleep):
        self.base_url = base_url
        self.limiter = limiter
        self.max_retries = max_retries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._rng = random.Random(seed)
        self._sleep = sleep
        self.contacted = False
        self.requests = 0
        self.bytes = 0
        self.retries: Counter[str] = Counter()

    def fetch(self, ids: Sequence[str]) -> list[FastaRecord]:
        """The records NCBI returns for `ids` (possibly fewer than asked, or none when it rejects them)."""
        attempt = 0
        while True:
            try:
                return self._attempt(ids)
            except FetchFailure as failure:
                if failure.reason == "connection" and not self.contacted:
                    raise UserError(
                        f"cannot reach {self.base_url}: {failure.detail}; pass --source synthetic to work offline"
                    ) from failure
                if attempt >= self.max_retries:
                    raise UserError(self._gave_up(ids, failure)) from failure
                self.retries[failure.reason] += 1
                delay = backoff_delay(attempt, self.base_delay, self.max_delay, self._rng, failure.retry_after)
                LOG.warning("efetch of %d ids: %s; retry %d/%d in %.2f s",
                            len(ids), failure.detail, attempt + 1, self.max_retries, delay)
                self._sleep(delay)
                attempt += 1

    def _gave_up(self, ids: Sequence[str], failure: FetchFailure) -> str:
        tries = self.max_retries + 1
        if failure.reason == "connection":
            return (f"cannot reach {self.base_url}: {failure.detail} ({tries} tries); rerun the same command to "
                    "resume, or pass --source synthetic to work offline")
        return (f"{self.base_url}efetch.fcgi failed {tries} times for a batch of {len(ids)} ids (last: "
                f"{failure.detail}); rerun the same command to resume (nothing written is lost) or raise --max_retries")

    def _attempt(self, ids: Sequence[str]) -> list[FastaRecord]:
        from Bio import Entrez

        self.limiter.wait()
        self.requests += 1
        try:
            handle = Entrez.efetch(db="nuccore", id=",".join(ids), rettype="fasta", retmode="text")
            try:
                data = handle.read()
            finally:
                handle.close()
        except HTTPError as exc:
            self.contacted = True
            return self._http_error(exc)
        except URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise FetchFailure("timeout", f"timed out ({exc.reason})") from exc
            raise FetchFailure("connection", str(exc.reason)) from exc
        except TimeoutError as exc:
            raise FetchFailure("timeout", f"timed out ({exc or 'no answer'})") from exc
        except (ConnectionError, http.client.HTTPException) as exc:
            raise FetchFailure("dropped", f"connection dropped ({type(exc).__name__}: {exc})") from exc
        except UnicodeDecodeError as exc:
            raise FetchFailure("bad_response", f"answer is not text ({exc})") from exc
        self.contacted = True
        text = data if isinstance(data, str) else data.decode("utf-8", errors="replace")
        self.bytes += len(text.encode("utf-8"))
        return self._parse(text)

    def _http_error(self, exc: HTTPError) -> list[FastaRecord]:
        status = f"HTTP {exc.code} {exc.reason}"
        if exc.code == 429:
            raise FetchFailure("http_429", status, parse_retry_after(exc.headers.get("Retry-After"))) from exc
        if exc.code >= 500:
            raise FetchFailure("http_5xx", status) from exc
        try:
            body = exc.read().decode("utf-8", errors="replace")
        except (OSError, http.client.HTTPException):
            body = ""
        if "api key" in body.lower() or "api_key" in body.lower():
            raise UserError(f"--api_key: NCBI rejected it ({status}); check the key or leave it out")
        LOG.debug("NCBI rejected the ids (%s: %s)", status, body.strip()[:200])
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


# ---------------------------------------------------------------- the FASTA on disk


def repair_tail(path: Path, expected_length: dict[str, int | None], block: int = 1 << 20) -> int:
    """Cut a partial last record (a crash during an append) off the FASTA; return the bytes removed.

    The last record is complete when the file ends in a newline, it has a header and a sequence, and
    the sequence is as long as the CSV says (a cut at a line end leaves a short but tidy record)."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "r+b") as handle:
        if handle.read(1) != b">":
            raise UserError(f"--output {path}: exists and is not FASTA; choose another --output or pass --overwrite")
        tail = b""
        position = size
        while True:
            begin = max(0, position - block)
            handle.seek(begin)
            tail = handle.read(position - begin) + tail
            position = begin
            found = tail.rfind(b"\n>")
            if found >= 0:
                start = position + found + 1
                break
            if position == 0:
                start = 0
                break
        handle.seek(start)
        if _complete_record(handle.read(), expected_length):
            return 0
        handle.truncate(start)
        handle.flush()
        os.fsync(handle.fileno())
    LOG.warning("%s: removed a partial last record (%d bytes) left by an interrupted run", path, size - start)
    return size - start


def _complete_record(raw: bytes, expected_length: dict[str, int | None]) -> bool:
    if not raw.endswith(b"\n"):
        return False
    try:
        lines = raw.decode("ascii").splitlines()
    except UnicodeDecodeError:
        return False
    header = lines[0][1:].strip()
    sequence = "".join(line.strip() for line in lines[1:])
    if not header or not sequence:
        return False
    want = expected_length.get(parse_header(header)[0])
    return want is None or len(sequence) == want


def accessions_in(path: Path) -> set[str]:
    if not path.is_file() or path.stat().st_size == 0:
        return set()
    return {parse_header(record.header)[0] for record in iter_fasta(path)}


def read_missing(path: Path) -> list[str]:
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


class FastaAppender:
    """Appends whole batches to the FASTA: one write, flush and fsync each, in NCBI's format with
    70-column sequence lines. The file is created by the first append, so a run that fetches
    nothing (no network) leaves no empty FASTA behind."""

    def __init__(self, path: Path):
        self.path = path
        self._handle: BinaryIO | None = None

    def append(self, records: Sequence[FastaRecord]) -> int:
        text = "".join(format_record(record.header, record.sequence) for record in records)
        data = text.encode("ascii", errors="replace")
        if self._handle is None:
            self._handle = open(self.path, "ab")
        self._handle.write(data)
        self._handle.flush()
        os.fsync(self._handle.fileno())
        return len(data)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


# ---------------------------------------------------------------- the stage


def check_output(fasta: Path) -> None:
    """--output must be a plain FASTA file's path in a folder (the download appends to it)."""
    if fasta.suffix == ".gz":
        raise UserError(f"--output {fasta}: write plain FASTA (the download appends to it); compress it afterwards")
    if fasta.is_dir():
        raise UserError(f"--output {fasta}: is a folder; give the FASTA file's path, e.g. {fasta / 'rna_sequences.fasta'}")
    if fasta.parent.exists() and not fasta.parent.is_dir():
        raise UserError(f"--output {fasta}: {fasta.parent} is not a folder")


def check_same_run(run: StageRun, fasta: Path, overwrite: bool, same_run: dict[str, object]) -> None:
    """Refuse to append to a FASTA whose recorded download used another source or selection (it would mix
    two downloads), unless --overwrite."""
    if overwrite or run.previous_record is None:
        return
    old = run.previous_record.get("args") or {}
    changed = [key for key, value in same_run.items() if _comparable(key, old.get(key)) != _comparable(key, value)]
    if changed:
        raise UserError(f"--output {fasta}: the download recorded in {run.place.args_path} used different "
                        f"--{', --'.join(changed)}; rerun with the same flags to resume, or pass --overwrite to start "
                        "afresh")


def _comparable(key: str, value: object) -> object:
    if key == "csv" and value:
        return Path(str(value)).name
    if key == "output" and value:
        return Path(str(value)).name
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return value


class Download:
    """One run's fetch loop: stores each batch as soon as it is complete, re-asks the ids a batch
    lacked one by one (a single bad id can make NCBI reject a whole batch), then records the ids
    still missing in missing_ids.txt so no later run asks for them again."""

    def __init__(self, client: EntrezClient, appender: FastaAppender, missing_path: Path,
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
        found, problems = match_records(batch, self.client.fetch(batch), self.expected_length)
        self._store([found[a] for a in batch if a in found])
        if len(batch) > 1:
            for accession in list(problems):
                self.reasks += 1
                more, again = match_records([accession], self.client.fetch([accession]), self.expected_length)
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


def run_ncbi(args: argparse.Namespace) -> int:
    """Fetch the selected RefSeq transcripts into args.output, resuming a previous run."""
    started = time.monotonic()
    base_url = _normalise_url(args.eutils_url)
    prefixes = parse_prefixes(args.prefixes)
    rows = read_summary_csv(args.csv, prefixes)
    selection = select_transcripts(rows, args.max_sequences, args.sample, args.seed)
    fasta = Path(args.output)
    check_output(fasta)
    same_run: dict[str, object] = {"source": "ncbi", "csv": args.csv, "prefixes": list(prefixes),
                                   "sample": args.sample, "output": args.output}
    if args.sample:
        same_run["seed"] = args.seed
    with stage_run(fasta, STAGE, vars(args), role="download", overwrite=args.overwrite, flag="--output",
                   single_file=True, completed="rerun") as run:
        check_same_run(run, fasta, args.overwrite, same_run)
        return _download(args, run, fasta, selection, rows, prefixes, base_url, started)


def _download(args: argparse.Namespace, run: StageRun, fasta: Path, selection: list[Transcript],
              rows: list[Transcript], prefixes: tuple[str, ...], base_url: str, started: float) -> int:
    expected_length = {t.accession: t.length for t in selection}
    missing_path = run.place.named(MISSING_FILE)
    if args.overwrite:
        fasta.unlink(missing_ok=True)
        missing_path.unlink(missing_ok=True)
    repaired = repair_tail(fasta, expected_length) if fasta.is_file() else 0
    present = accessions_in(fasta)
    missing = read_missing(missing_path)
    known_missing = set(missing)
    n_present = sum(1 for t in selection if t.accession in present)
    n_known_missing = sum(1 for t in selection if t.accession in known_missing)
    todo = [t.accession for t in selection if t.accession not in present and t.accession not in known_missing]

    email_address = args.email or os.environ.get("NCBI_EMAIL") or None
    api_key = args.api_key or os.environ.get("NCBI_API_KEY") or None
    if not email_address:
        LOG.warning("no --email (or NCBI_EMAIL): NCBI asks for one so it can contact heavy users before blocking them")
    limit = NCBI_RATE_LIMIT_WITH_KEY if api_key else NCBI_RATE_LIMIT
    per_second = args.requests_per_second or limit
    if base_url == NCBI_EUTILS and per_second > limit:
        LOG.warning("--requests_per_second %s is above NCBI's limit of %s/s; expect HTTP 429", per_second, limit)

    client = EntrezClient(base_url, RateLimiter(per_second), args.max_retries, args.retry_base_delay,
                          args.retry_max_delay, args.seed)
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
            "requests": client.requests,
            "individual_reasks": download.reasks,
            "retries": {reason: client.retries[reason] for reason in RETRY_REASONS},
            "bytes_received": client.bytes,
            "bytes_written": download.bytes_written,
            "seconds": round(seconds, 3),
            "ids_per_second": round(download.fetched / seconds, 3) if seconds > 0 else None,
            "requests_per_second_limit": per_second,
            "batch_size": args.batch_size,
        }

    LOG.info("%d ids selected (%s): %d already in %s, %d listed in %s; fetching %d",
             len(selection), " ".join(prefixes), n_present, fasta, n_known_missing, missing_path, len(todo))
    try:
        report = lambda: {"sequences": len(present) + download.fetched, "missing": len(missing)}  # noqa: E731
        with entrez_session(base_url, email_address, api_key, args.timeout), \
                Progress(len(todo), "efetch", unit="id", every=args.log_every, report=report) as progress:
            for begin in range(0, len(todo), args.batch_size):
                batch = todo[begin:begin + args.batch_size]
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


def _normalise_url(url: str) -> str:
    if not re.match(r"^https?://[^/]+", url or ""):
        raise UserError(f"--eutils_url {url}: expected an http(s) address such as {NCBI_EUTILS}")
    return url if url.endswith("/") else url + "/"

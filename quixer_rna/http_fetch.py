"""HTTP for the download stage (NCBI E-utilities, UCSC's file server): urllib with a timeout on every
request, an optional rate limit, and retries with exponential backoff that honour Retry-After.

Written on urllib rather than through Biopython's Entrez because Entrez cannot give the behaviour
the servers ask for: it retries HTTP 429 and 5xx at once with no wait (and waits a fixed
`sleep_between_tries` only after connection errors), ignores Retry-After, sets no timeout, keeps
one module-wide rate limit that cannot be set below NCBI's, and builds every URL from a literal
NCBI address, so a mirror or a test server can only be reached by patching its private seams.
"""

from __future__ import annotations

import email.utils
import http.client
import logging
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, TypeVar
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from .errors import UserError

LOG = logging.getLogger(__name__)

RETRY_REASONS = ("http_429", "http_5xx", "timeout", "dropped", "connection", "bad_response")
USER_AGENT = "quixer-rna (download_rna_sequences.py)"
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait for an answer and how to retry one that failed (the flags of the same names)."""

    max_retries: int = 6
    retry_base_delay: float = 1.0
    retry_max_delay: float = 60.0
    timeout: float = 60.0


class FetchFailure(Exception):
    """A request that may succeed when tried again; `reason` is one of RETRY_REASONS."""

    def __init__(self, reason: str, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after


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


def check_url(url: str, flag: str, example: str) -> str:
    """An http(s) base address from a flag, ending in '/' so that names can be appended to it."""
    if not re.match(r"^https?://[^/]+", url or ""):
        raise UserError(f"{flag} {url}: expected an http(s) address such as {example}")
    return url if url.endswith("/") else url + "/"


class HttpClient:
    """Requests to one server: `open` sends one (rate-limited, with the timeout), `call` runs an attempt
    (a request and the reading of its answer) until it succeeds, retrying what may pass on a second
    try. Counts requests, bytes received and retries by reason for the run's metrics.

    `offline_hint` ends the one-line error when the server cannot be reached at all."""

    def __init__(self, base_url: str, policy: RetryPolicy, *, limiter: RateLimiter | None = None, seed: int = 0,
                 offline_hint: str = "check the network", sleep: Callable[[float], None] = time.sleep):
        self.base_url = base_url
        self.policy = policy
        self.limiter = limiter
        self.offline_hint = offline_hint
        self._rng = random.Random(seed)
        self._sleep = sleep
        self.contacted = False
        self.requests = 0
        self.received = 0
        self.retries: Counter[str] = Counter()

    def open(self, request: Request) -> http.client.HTTPResponse:
        """Send one request. HTTP 429 and 5xx raise FetchFailure; other HTTP errors raise HTTPError for
        the caller to read (a 404 or 400 means something to it); transport errors propagate to `call`."""
        if self.limiter is not None:
            self.limiter.wait()
        self.requests += 1
        request.add_header("User-Agent", USER_AGENT)
        try:
            response = urlopen(request, timeout=self.policy.timeout)
        except HTTPError as exc:
            self.contacted = True
            status = f"HTTP {exc.code} {exc.reason}"
            if exc.code == 429:
                raise FetchFailure("http_429", status, parse_retry_after(exc.headers.get("Retry-After"))) from exc
            if exc.code >= 500:
                raise FetchFailure("http_5xx", status) from exc
            raise
        self.contacted = True
        return response

    def call(self, what: str, attempt: Callable[[], T]) -> T:
        """attempt() until it returns, sleeping a backoff before each retry; a failure past --max_retries, or
        a server never reached, is a one-line UserError saying that a rerun resumes."""
        tries = 0
        while True:
            try:
                return attempt()
            except HTTPError:
                raise
            except FetchFailure as failure:
                problem = failure
            except URLError as exc:
                reason = exc.reason
                problem = (FetchFailure("timeout", f"timed out ({reason})") if isinstance(reason, TimeoutError)
                           else FetchFailure("connection", str(reason)))
            except TimeoutError as exc:
                problem = FetchFailure("timeout", f"timed out ({exc or 'no answer'})")
            except (ConnectionError, http.client.HTTPException) as exc:
                problem = FetchFailure("dropped", f"connection dropped ({type(exc).__name__}: {exc})")
            if problem.reason == "connection" and not self.contacted:
                raise UserError(f"cannot reach {self.base_url}: {problem.detail}; {self.offline_hint}") from problem
            if tries >= self.policy.max_retries:
                raise UserError(self._gave_up(what, problem, tries + 1)) from problem
            self.retries[problem.reason] += 1
            delay = backoff_delay(tries, self.policy.retry_base_delay, self.policy.retry_max_delay, self._rng,
                                  problem.retry_after)
            LOG.warning("%s: %s; retry %d/%d in %.2f s", what, problem.detail, tries + 1, self.policy.max_retries,
                        delay)
            self._sleep(delay)
            tries += 1

    def _gave_up(self, what: str, failure: FetchFailure, tries: int) -> str:
        if failure.reason == "connection":
            return (f"cannot reach {self.base_url}: {failure.detail} ({tries} tries); rerun the same command to "
                    f"resume, or {self.offline_hint}")
        return (f"{what} failed {tries} times (last: {failure.detail}); rerun the same command to resume (nothing "
                "written is lost) or raise --max_retries")

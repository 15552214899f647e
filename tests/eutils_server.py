"""A small stand-in for NCBI E-utilities that the download tests start on 127.0.0.1.

It answers efetch.fcgi (GET, and POST as NCBI asks for long id lists) the way NCBI does for
db=nuccore&rettype=fasta&retmode=text: FASTA records of the requested ids it knows, 70-column
lines, a blank line after each record; HTTP 400 when it knows none of them. Tests queue faults for
the next requests (429 with Retry-After, 500, a dropped connection, a slow answer, a batch that
omits ids) or make it fail from some request on, and read its log of requests and their times.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

WIDTH = 70


@dataclass
class Fault:
    """What to do to one request instead of answering it normally."""

    kind: str  # "429", "500", "400" (with `body`), "drop", "slow" (answer 503 after `seconds`), "omit"
    retry_after: str | None = None  # for 429
    body: str = ""  # for 400
    seconds: float = 0.0  # for slow
    omit: frozenset[str] = frozenset()  # for omit: ids left out of an otherwise normal answer


@dataclass
class LoggedRequest:
    time: float  # time.monotonic() when the request arrived
    method: str
    ids: list[str]
    status: int | None  # None when the connection was dropped
    returned: list[str] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)  # the request's parameters, first value of each


class FakeEutils:
    """`records` maps accession.version to (description, sequence)."""

    def __init__(self, records: dict[str, tuple[str, str]]):
        self.records = dict(records)
        self.faults: list[Fault] = []
        self.fail_from: int | None = None  # answer 500 to every request from this index (0-based) on
        self.delay = 0.0  # seconds added to every answer
        self.log: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/entrez/eutils/"

    def __enter__(self) -> "FakeEutils":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                fake._answer(self, parse_qs(urlsplit(self.path).query))

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                fake._answer(self, parse_qs(self.rfile.read(length).decode("utf-8")))

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence stderr
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def fetched_ids(self) -> list[str]:
        """Every id the server has returned in a successful answer, in order, repeats included."""
        with self._lock:
            return [i for entry in self.log if entry.status == 200 for i in entry.returned]

    def _answer(self, handler: BaseHTTPRequestHandler, params: dict[str, list[str]]) -> None:
        arrived = time.monotonic()
        ids = [i for i in (params.get("id") or [""])[0].split(",") if i]
        entry = LoggedRequest(arrived, handler.command, ids, None, params={k: v[0] for k, v in params.items()})
        with self._lock:
            index = len(self.log)
            self.log.append(entry)
            fault = self.faults.pop(0) if self.faults else None
        if self.delay:
            time.sleep(self.delay)
        if not urlsplit(handler.path).path.endswith("/efetch.fcgi"):
            return self._send(handler, entry, 404, "unknown E-utility\n")
        wanted = {"db": "nuccore", "rettype": "fasta", "retmode": "text"}
        if any((params.get(key) or [""])[0] != value for key, value in wanted.items()) or not ids:
            return self._send(handler, entry, 400, "Error: this fake serves db=nuccore rettype=fasta retmode=text\n")
        if self.fail_from is not None and index >= self.fail_from:
            return self._send(handler, entry, 500, "Internal Server Error\n")
        if fault is not None and fault.kind == "drop":
            handler.close_connection = True
            return None
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.seconds)
            return self._send(handler, entry, 503, "too late: the client has given up\n")
        if fault is not None and fault.kind == "429":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return self._send(handler, entry, 429, '{"error":"API rate limit exceeded"}\n', headers)
        if fault is not None and fault.kind == "400":
            return self._send(handler, entry, 400, fault.body)
        if fault is not None and fault.kind == "500":
            return self._send(handler, entry, 500, "Internal Server Error\n")
        omit = fault.omit if fault is not None and fault.kind == "omit" else frozenset()
        known = [i for i in ids if i in self.records and i not in omit]
        if not known:
            return self._send(handler, entry, 400, f"Error: F a i l e d  t o  u n d e r s t a n d  i d:  {ids[0]}\n")
        entry.returned = known
        return self._send(handler, entry, 200, "".join(self._fasta(i) for i in known))

    def _fasta(self, accession: str) -> str:
        description, sequence = self.records[accession]
        lines = [f">{accession} {description}"]
        lines += [sequence[i:i + WIDTH] for i in range(0, len(sequence), WIDTH)]
        return "\n".join(lines) + "\n\n"

    def _send(self, handler: BaseHTTPRequestHandler, entry: LoggedRequest, status: int, body: str,
              headers: dict[str, str] | None = None) -> None:
        data = body.encode("utf-8")
        entry.status = status
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "text/plain; charset=UTF-8")
            handler.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True

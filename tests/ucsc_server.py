"""A small stand-in for UCSC's download server that the genome download tests start on 127.0.0.1.

It serves <url><assembly>/chromosomes/<file> and md5sum.txt of those files (GNU md5sum's format, as
UCSC publishes it) the way Apache does for static files: ETag and Last-Modified, single ranges
`Range: bytes=N-` answered 206 with Content-Range, If-Range honoured (a stale validator gets the
whole file, 200), 416 past the end, 404 for anything else. Tests can corrupt the next answers of a
file, drop the connection of its next answers after some bytes, slow every answer down, ignore Range
(as some proxies do), withhold md5sum.txt, and read a log of the requests with the bytes each answer
sent so far.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PIECE = 4096  # bytes written between two checks of `throttle` and `drop_after`
LAST_MODIFIED = "Tue, 14 Jan 2020 18:09:01 GMT"


@dataclass
class Served:
    time: float  # time.monotonic() when the request arrived
    name: str  # the file name asked for (the last path element)
    range: str | None
    if_range: str | None
    status: int | None = None
    sent: int = 0  # body bytes written so far


class FakeUcsc:
    """`files` maps a file name (chr21.fa.gz) to its bytes."""

    def __init__(self, assembly: str, files: dict[str, bytes], publish_md5: bool = True):
        self.assembly = assembly
        self.files = dict(files)
        self.publish_md5 = publish_md5
        self.corrupt: dict[str, int] = {}  # file name -> how many of its next answers carry one flipped byte
        self.drop_after: dict[str, list[int]] = {}  # file name -> its next answers close the connection after N bytes
        self.ranges = True  # False: answer every request with the whole file, as a server without Range support
        self.throttle = 0.0  # seconds slept after each PIECE of a body
        self.log: list[Served] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/goldenPath/"

    def md5sum_text(self) -> str:
        return "".join(f"{hashlib.md5(data).hexdigest()}  {name}\n" for name, data in sorted(self.files.items()))

    def requests_for(self, name: str) -> list[Served]:
        with self._lock:
            return [entry for entry in self.log if entry.name == name]

    def __enter__(self) -> "FakeUcsc":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                fake._answer(self)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence stderr
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        prefix = f"/goldenPath/{self.assembly}/chromosomes/"
        name = handler.path.rsplit("/", 1)[-1]
        entry = Served(time.monotonic(), name, handler.headers.get("Range"), handler.headers.get("If-Range"))
        with self._lock:
            self.log.append(entry)
            corrupt = self.corrupt.get(name, 0) > 0
            if corrupt:
                self.corrupt[name] -= 1
            drops = self.drop_after.get(name)
            drop = drops.pop(0) if drops else None
        if not handler.path.startswith(prefix):
            return self._send(handler, entry, 404, b"Not Found\n")
        if name == "md5sum.txt":
            if not self.publish_md5:
                return self._send(handler, entry, 404, b"Not Found\n")
            return self._send(handler, entry, 200, self.md5sum_text().encode("ascii"))
        data = self.files.get(name)
        if data is None:
            return self._send(handler, entry, 404, b"Not Found\n")
        etag = f'"{hashlib.md5(data).hexdigest()[:16]}"'
        if corrupt:
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0x20]) + data[middle + 1:]
        headers = {"ETag": etag, "Last-Modified": LAST_MODIFIED, "Accept-Ranges": "bytes",
                   "Content-Type": "application/x-gzip"}
        match = re.fullmatch(r"bytes=(\d+)-", entry.range or "")
        if match is None or not self.ranges or (entry.if_range is not None and entry.if_range != etag):
            return self._send(handler, entry, 200, data, headers, drop)
        start = int(match.group(1))
        if start >= len(data):
            return self._send(handler, entry, 416, b"", {**headers, "Content-Range": f"bytes */{len(data)}"})
        headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        return self._send(handler, entry, 206, data[start:], headers, drop)

    def _send(self, handler: BaseHTTPRequestHandler, entry: Served, status: int, body: bytes,
              headers: dict[str, str] | None = None, drop: int | None = None) -> None:
        entry.status = status
        try:
            handler.send_response(status)
            for key, value in (headers or {"Content-Type": "text/plain"}).items():
                handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            end = len(body) if drop is None else min(drop, len(body))
            for begin in range(0, end, PIECE):
                handler.wfile.write(body[begin:min(end, begin + PIECE)])
                entry.sent = min(end, begin + PIECE)
                if self.throttle:
                    time.sleep(self.throttle)
            if drop is not None:
                handler.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True

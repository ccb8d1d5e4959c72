"""A local HTTP server with Range support for the remote tests: it serves a folder, counts the
bytes of every body it sends, and can be told to misbehave (drop the connection part way through
a body, refuse with a status, change the ETag of every file)."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Behaviour:
    def __init__(self) -> None:
        self.sent = 0  # body bytes sent, all requests together
        self.requests: list[str] = []
        self.drop_after: int | None = None  # bytes of a ranged body before hanging up
        self.status: int | None = None  # answer every request with this status instead
        self.etag_salt = ""
        self.lock = threading.Lock()

    def reset(self) -> None:
        with self.lock:
            self.sent, self.requests = 0, []


def _handler(root: Path, behaviour: Behaviour) -> type[SimpleHTTPRequestHandler]:
    class Handler(SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args) -> None:  # noqa: ANN002
            pass

        def _etag(self, path: Path) -> str:
            st = path.stat()
            text = f"{st.st_size}-{st.st_mtime_ns}-{behaviour.etag_salt}"
            return '"' + hashlib.md5(text.encode()).hexdigest() + '"'

        def _send(self, data: bytes) -> None:
            with behaviour.lock:
                behaviour.sent += len(data)
            self.wfile.write(data)

        def do_HEAD(self) -> None:  # noqa: N802
            self._serve(body=False)

        def do_GET(self) -> None:  # noqa: N802
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            with behaviour.lock:
                behaviour.requests.append(f"{self.command} {self.path} {self.headers.get('Range')}")
            if behaviour.status is not None:
                self.send_response(behaviour.status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path = Path(self.translate_path(self.path))
            if path.is_dir():
                if body:
                    return super().do_GET()
                return super().do_HEAD()
            if not path.is_file():
                self.send_error(404)
                return
            size = path.stat().st_size
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
            begin, end = 0, size
            if match:
                begin = int(match.group(1))
                end = min(size, int(match.group(2)) + 1) if match.group(2) else size
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {begin}-{end - 1}/{size}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(end - begin))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", self._etag(path))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if not body:
                return
            with open(path, "rb") as f:
                f.seek(begin)
                data = f.read(end - begin)
            if match and behaviour.drop_after is not None and len(data) > behaviour.drop_after:
                self._send(data[: behaviour.drop_after])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self._send(data)

    return Handler


@contextmanager
def serving(root: Path) -> Iterator[tuple[str, Behaviour]]:
    """``(base URL, behaviour)`` of a server for ``root``, for the ``with`` block."""
    behaviour = Behaviour()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(root, behaviour))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", behaviour
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

"""The package registries of coderun's tests and benchmarks: a static file server that
answers each host name (``Host:``) from ``ROOT/<host>/`` (see build_fixtures.py).

A folder answers with its ``index.json`` or ``index.html``. Every request is logged as
``GET <host> <path> <status>`` on stdout, so a test can see what was fetched.
Nothing here talks to anything: it only answers.
"""

from __future__ import annotations

import posixpath
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else "/srv")
TYPES = {".json": "application/json", ".html": "text/html", ".tgz": "application/octet-stream"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def find(self) -> Path | None:
        host = (self.headers.get("Host") or "").split(":")[0].lower()
        path = posixpath.normpath(unquote(urlsplit(self.path).path))
        if not host or "/" in host or host.startswith(".") or not path.startswith("/"):
            return None
        target = ROOT / host / path.lstrip("/")
        if target.is_dir():
            target = next((target / n for n in ("index.json", "index.html")
                           if (target / n).is_file()), target)  # fmt: skip
        return target if target.is_file() else None

    def answer(self, body: bool) -> None:
        target = self.find()
        host = self.headers.get("Host", "")
        if target is None:
            data, status, kind = b"not found\n", 404, "text/plain"
        else:
            data, status = target.read_bytes(), 200
            kind = TYPES.get(target.suffix, "application/octet-stream")
            if target.name == "index.json":
                kind = "application/json"
        print(f"{self.command} {host} {self.path} {status}", flush=True)
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.answer(True)

    def do_HEAD(self) -> None:  # noqa: N802
        self.answer(False)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # one line per request is printed by answer()


if __name__ == "__main__":
    server = ThreadingHTTPServer(("0.0.0.0", 80), Handler)
    print("READY", flush=True)
    server.serve_forever()

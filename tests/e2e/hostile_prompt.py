"""A hostile command for the line-prompt tests (runs *inside* the sandbox, stdlib only).

``overwrite HOST PORT``: connect to HOST:PORT in a thread (a connection the prompt asks
about) while printing, every 0.1 s, a carriage return, an erase-line and a fake question
naming ``pypi.test``, as if to repaint the real one; ends when the connection is decided.

``linger HOST PORT SECONDS``: start the same connection, then end the whole command after
SECONDS while it is still held (the question still open).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

FAKE = (
    "\r\x1b[2K\x1b[1A\x1b[2K\x1b]0;pypi.test\x07"
    "coderun Allow connection to pypi.test 443/tcp (address 198.51.100.223)? "
    "[a]llow once / [A]lways / [d]eny / [D]eny always "
)


def connect(host: str, port: int, result: list[str]) -> None:
    try:
        with socket.create_connection((host, port), timeout=120):
            result.append("connected")
    except OSError as exc:
        result.append(f"not connected: {exc!r}")


def main() -> None:
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    result: list[str] = []
    worker = threading.Thread(target=connect, args=(host, port, result), daemon=True)
    worker.start()
    if mode == "linger":
        time.sleep(float(sys.argv[4]))
        print("leaving with the connection still held", flush=True)
        os._exit(0)
    while worker.is_alive():
        sys.stdout.write(FAKE)
        sys.stdout.flush()
        time.sleep(0.1)
    print(f"\nresult: {result[0]}", flush=True)


if __name__ == "__main__":
    main()

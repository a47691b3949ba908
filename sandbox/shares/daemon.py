"""The host-side FUSE daemon of one share: ``python -m sandbox.shares.daemon ...``.

Started by the run (sandbox/shares/mounts.py) before the sandbox is created, in a
session of its own; it mounts with ``allow_other`` (the sandbox's uid is not the
host's) and serves until it is unmounted. Every open is decided first
(sandbox/shares/gate.py: rules, then the mode; ask mode holds it for a person through
the gateway) and logged with its verdict; every close is logged with the bytes read and
written (sandbox/shares/filelog.py). It runs several threads, so an open held for a
person never keeps another request (a listing, a read) waiting.
"""

from __future__ import annotations

import argparse
import errno
import os
from pathlib import Path

import mfusepy

from sandbox.shares.filelog import FileLog
from sandbox.shares.fs import ShareFS
from sandbox.shares.gate import ASK_SLACK, MAX_HELD, FileGate, Opening, gateway_asker
from sandbox.shares.process import asker
from sandbox.shares.rules import FileRules
from snitch.core.filepaths import shown_path
from snitch.core.grammar import Origin
from snitch.core.model import Action, Mode
from snitch.review.client import GatewayClient


class Judge:
    """Decides and logs each open (``ShareFS.on_open``) and logs each close."""

    def __init__(self, gate: FileGate, rules: FileRules, log: FileLog, root: str,
                 only: str | None, home: str) -> None:  # fmt: skip
        self.gate, self.rules, self.log = gate, rules, log
        self.root, self.only, self.home = root.rstrip("/"), only, home

    def person_path(self, path: str) -> str:
        """The host path of a share path, as the person knows it (``~/...``)."""
        host = f"{self.root}/{self.only}" if self.only is not None else self.root + path
        return shown_path(host or "/", self.home)

    def on_open(self, path: str, write: bool, host_pid: int, what: str = "") -> None:
        """An open (``what`` empty) or a change that opens nothing (``unlink``...)."""
        access = "write" if write else "read"
        opening = Opening(self.person_path(path), self.log.shown(path), access, asker(host_pid))
        decision = self.gate.decide(opening)
        rule = self.rules.describe(decision.rule_id)
        if not rule and decision.origin is Origin.RULE:
            rule = decision.reason  # a rule stored by the decision, described by the gateway
        self.log.on_open(opening, decision, rule, what)
        if decision.action is not Action.ALLOW:
            raise mfusepy.FuseOSError(errno.EACCES)

    def on_close(self, path: str, read: int, written: int) -> None:
        self.log.on_close(self.log.shown(path), self.person_path(path), read, written)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--only")
    parser.add_argument("--mount", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--rw", action="store_true")
    parser.add_argument("--max-bytes", type=int, default=100 * 1024 * 1024)
    parser.add_argument("--log", required=True)
    parser.add_argument("--session", default="")
    parser.add_argument("--mode", choices=[str(m) for m in Mode], default=str(Mode.AUDIT))
    parser.add_argument("--rules", help="the rule store (rules.db)")
    parser.add_argument("--policy", help="the run's policy file")
    parser.add_argument("--profile")
    parser.add_argument("--image")
    parser.add_argument("--home", default=str(Path.home()))
    parser.add_argument("--api", help="the gateway's control socket (ask mode)")
    parser.add_argument("--token-file", help="the control API's token (ask mode)")
    parser.add_argument("--ask-timeout", type=float, default=60.0)
    parser.add_argument("--masked", help="--secret-file: serve this file's text instead")
    args = parser.parse_args()
    log = FileLog(Path(args.log), args.session, args.target, args.only)
    rules = FileRules(Path(args.rules) if args.rules else None,
                      Path(args.policy) if args.policy else None, args.session,
                      args.profile or None, args.image or None)  # fmt: skip
    ask = None
    if args.api and args.token_file:
        token = Path(args.token_file).read_text().strip()
        client = GatewayClient(Path(args.api), token, args.session)
        ask = gateway_asker(client, args.ask_timeout + ASK_SLACK)
    gate = FileGate(rules, Mode(args.mode), ask)
    judge = Judge(gate, rules, log, os.path.realpath(args.root), args.only, args.home)
    masked = Path(args.masked).read_bytes() if args.masked else None
    fs = ShareFS(Path(args.root), args.only, args.rw, args.max_bytes, judge.on_open,
                 judge.on_close, masked)  # fmt: skip
    try:
        mfusepy.FUSE(fs, args.mount, foreground=True, allow_other=True, ro=not args.rw,
                     fsname="coderun-share", max_threads=MAX_HELD + 16)  # fmt: skip
    finally:
        rules.close()


if __name__ == "__main__":
    main()

"""RuleStore across processes: concurrent writers lose nothing; kill -9 loses no commit."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from snitch.core.model import Action, Rule
from snitch.core.store import RuleStore

WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from snitch.core.model import Action, Rule
    from snitch.core.store import RuleStore

    path, wid, n, go = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    while not go.exists():
        time.sleep(0.005)
    with RuleStore(path) as s:
        first = None
        for i in range(n):
            rid = s.add(Rule(Action.ALLOW, host=f"w{wid}-{i}.test", note=str(wid)))
            first = first or rid
            if i % 5 == 0:
                s.set_enabled(rid, False)
                s.record_hits({first: (1, float(i))})
            s.generation()
        s.blocklist_add([f"b{wid}-{i}.test" for i in range(n)], source=f"w{wid}")
    """
)

KILLED = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from snitch.core.model import Action, Rule
    from snitch.core.store import RuleStore

    path, marker = Path(sys.argv[1]), Path(sys.argv[2])
    s = RuleStore(path)
    for i in range(25):
        s.add(Rule(Action.DENY, host=f"committed-{i}.test"))

    def rules():
        for i in range(20000):
            if i == 8000:  # well inside the transaction, with pages spilled to the WAL
                marker.write_text("in transaction")
                time.sleep(60)
            yield Rule(Action.ALLOW, host=f"uncommitted-{i}.test", note="x" * 400)

    s.add_many(rules(), blocklist=["never.test"])
    """
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    db, go = tmp_path / "rules.db", tmp_path / "go"
    writers, n = 6, 40
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), str(w), str(n), str(go)], env=_env()
        )
        for w in range(writers)
    ]
    time.sleep(0.3)  # let them all start and wait at the gate
    go.write_text("go")
    assert [p.wait(timeout=60) for p in procs] == [0] * writers
    with RuleStore(db) as s:
        rules = s.list()
        assert len(rules) == writers * n
        assert {r.host for r in rules} == {
            f"w{w}-{i}.test" for w in range(writers) for i in range(n)
        }
        per_writer = (n + 4) // 5
        assert sum(not r.enabled for r in rules) == writers * per_writer
        firsts = [min(r.id or 0 for r in rules if r.note == str(w)) for w in range(writers)]
        assert [s.get(f).hits for f in firsts] == [per_writer] * writers  # type: ignore[union-attr]
        assert s.blocklist_count() == writers * n
        # every add, every disable and every blocklist import bumped it exactly once
        assert s.generation() == writers * (n + per_writer + 1)


def test_kill_9_mid_transaction_keeps_every_commit(tmp_path: Path) -> None:
    db, marker = tmp_path / "rules.db", tmp_path / "marker"
    child = subprocess.Popen([sys.executable, "-c", KILLED, str(db), str(marker)], env=_env())
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, "writer died early"
            assert time.monotonic() < deadline, "writer never reached its transaction"
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    with RuleStore(db) as s:
        hosts = [r.host for r in s.list()]
        assert hosts == [f"committed-{i}.test" for i in range(25)]
        assert s.blocklist_count() == 0
        assert s.generation() == 25
        s.add(Rule(Action.ALLOW, host="after.test"))  # and it is writable again
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_gateway_style_polling_sees_other_processes(tmp_path: Path) -> None:
    db, go = tmp_path / "rules.db", tmp_path / "go"
    with RuleStore(db) as gateway:
        g0 = gateway.generation()
        go.write_text("go")
        cmd = [sys.executable, "-c", WRITER, str(db), "0", "3", str(go)]
        assert subprocess.run(cmd, env=_env(), timeout=60).returncode == 0
        assert gateway.generation() > g0
        assert len(gateway.list()) == 3
        gateway.add(Rule(Action.DENY, host="gw.test"))
        assert len(gateway.list()) == 4

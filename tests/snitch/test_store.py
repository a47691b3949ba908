"""RuleStore in one process: CRUD, generation, hits, expiry, blocklist, migrations, errors."""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import stat
from pathlib import Path

import pytest

from snitch.core import store as store_mod
from snitch.core.model import Action, Proto, Rule
from snitch.core.store import RuleStore, StoreError
from tests.needs import need_root

NOW = 1_700_000_000.0


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "rules.db"


def sample(**kw: object) -> Rule:
    base: dict[str, object] = {"action": Action.ALLOW, "host": "api.example.test", "created": NOW}
    base.update(kw)
    return Rule(**base)  # type: ignore[arg-type]


def test_add_get_list_roundtrip_every_field(db: Path) -> None:
    full = Rule(
        Action.DENY, host="*.example.test", cidr="192.0.2.0/24", port_lo=8000, port_hi=8100,
        proto=Proto.UDP, scope="profile:web", priority=3, path_prefix="/v1", once_key="k",
        session="s1", expires_at=NOW + 60, enabled=False, source="prompt", note="n \u00e9",
        created=NOW, hits=4, last_hit=NOW - 1,
    )  # fmt: skip
    with RuleStore(db) as s:
        rid = s.add(full)
        got = s.get(rid)
        assert got is not None and got.id == rid
        full.id = rid
        assert got == full
        assert s.list() == [full]
        assert s.list(include_disabled=False) == []
        assert s.get(rid + 100) is None


def test_ids_are_not_reused(db: Path) -> None:
    with RuleStore(db) as s:
        a = s.add(sample())
        assert s.remove(a)
        assert s.add(sample()) != a


def test_update_remove_enable(db: Path) -> None:
    with RuleStore(db) as s:
        rid = s.add(sample())
        rule = s.get(rid)
        assert rule is not None
        rule.note, rule.port_lo, rule.port_hi = "changed", 443, 443
        assert s.update(rule)
        assert s.get(rid) == rule
        assert s.set_enabled(rid, False)
        assert s.get(rid).enabled is False  # type: ignore[union-attr]
        assert not s.set_enabled(999, True)
        assert s.remove(rid) and not s.remove(rid)
        rule.id = 999
        assert not s.update(rule)
        with pytest.raises(ValueError):
            s.update(sample())


def test_invalid_rules_are_refused(db: Path) -> None:
    with RuleStore(db) as s:
        with pytest.raises(ValueError):
            s.add(sample(cidr="not-an-ip"))
        with pytest.raises(ValueError):
            s.add_many([sample(), sample(scope="team:x")])
        assert s.list() == []  # the good rule before the bad one is rolled back too


def test_generation_changes_with_every_rule_change(db: Path) -> None:
    with RuleStore(db) as s:
        seen = [s.generation()]
        rid = s.add(sample())
        seen.append(s.generation())
        s.set_enabled(rid, False)
        seen.append(s.generation())
        s.blocklist_add(["ads.example.test"])
        seen.append(s.generation())
        s.remove(rid)
        seen.append(s.generation())
        assert len(set(seen)) == len(seen)
        g = s.generation()
        s.record_hits({})
        assert s.generation() == g
        with RuleStore(db) as other:  # another connection sees it
            other.add(sample())
        assert s.generation() == g + 1


def test_record_hits_batched(db: Path) -> None:
    with RuleStore(db) as s:
        a, b = s.add(sample()), s.add(sample(host="b.test"))
        g = s.generation()
        s.record_hits({a: (3, NOW + 5), b: (1, NOW + 1)})
        s.record_hits({a: (2, NOW + 2)})  # last_hit never moves back
        ra, rb = s.get(a), s.get(b)
        assert ra is not None and rb is not None
        assert (ra.hits, ra.last_hit, rb.hits, rb.last_hit) == (5, NOW + 5, 1, NOW + 1)
        assert s.generation() == g  # hits are not rule changes


def test_blocklist_table(db: Path) -> None:
    with RuleStore(db) as s:
        g = s.blocklist_generation()
        assert s.blocklist_add(["Ads.Example.Test.", "x.test", "203.0.113.7"], "list1") == 3
        assert s.blocklist_add(["x.test", "y.test"], "list2") == 1
        assert s.blocklist_count() == 4
        assert s.blocklist_list() == ["203.0.113.7/32", "ads.example.test", "x.test", "y.test"]
        assert s.blocklist_list(limit=1) == ["203.0.113.7/32"]
        assert s.blocklist_generation() > g
        assert s.list() == []  # never stored as rule rows
        bl = s.blocklist_load()
        assert bl.match_name("a.ads.example.test") == "ads.example.test"
        assert bl.match_ip("203.0.113.7") == "203.0.113.7/32"
        view = s.blocklist_view()
        assert view.match_name("deep.x.test") == "x.test"
        assert view.match_name("x.test") == "x.test"  # the name itself, not only its parents
        assert view.match_name("Ads.Example.Test.") == "ads.example.test"
        assert view.match_name("example.test") is None
        assert view.match_ip("203.0.113.7") == "203.0.113.7/32"
        assert view.match_ip("203.0.113.8") is None
        with pytest.raises(ValueError):
            s.blocklist_add(["ok.test", "not a domain"])
        assert s.blocklist_count() == 4


def test_rule_add_does_not_bump_blocklist_generation(db: Path) -> None:
    with RuleStore(db) as s:
        g = s.blocklist_generation()
        s.add(sample())
        assert s.blocklist_generation() == g


def test_new_db_is_private(db: Path) -> None:
    old = os.umask(0o022)
    try:
        RuleStore(db).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_corrupt_file_is_reported_and_left_alone(db: Path) -> None:
    junk = b"this is not an sqlite database, just some bytes " * 100
    db.write_bytes(junk)
    with pytest.raises(StoreError) as err:
        RuleStore(db)
    assert str(db) in str(err.value) and "corrupt" in str(err.value)
    assert db.read_bytes() == junk


def test_damaged_pages_are_reported(db: Path) -> None:
    with RuleStore(db) as s:
        s.add_many([sample(note="x" * 500) for _ in range(200)])
    data = bytearray(db.read_bytes())
    for i in range(4096, len(data), 7):  # trash everything after the first page
        data[i] = 0xFF
    db.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=re.escape(str(db))), RuleStore(db) as s:
        s.list()


def test_foreign_sqlite_file_is_refused(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE other (x)")
    with pytest.raises(StoreError, match="not a coderun rule store"):
        RuleStore(db)


def test_locked_store_gives_a_clear_error(db: Path) -> None:
    RuleStore(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with RuleStore(db, timeout=0.2) as s:
            with pytest.raises(StoreError, match="locked"):
                s.add(sample())
            assert s.list() == []  # reads still work while a writer holds the lock
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_newer_schema_is_refused(db: Path) -> None:
    RuleStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = 99 WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="newer"):
        RuleStore(db)


def test_migration_backs_up_first(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = len(store_mod.MIGRATIONS)
    with RuleStore(db) as s:
        rid = s.add(sample(note="before"))
        assert s.schema_version() == now

    def extra(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE rules ADD COLUMN extra TEXT")

    monkeypatch.setattr(store_mod, "MIGRATIONS", [*store_mod.MIGRATIONS, extra])
    with RuleStore(db) as s:
        assert s.schema_version() == now + 1
        assert s.get(rid) is not None
    backups = list(db.parent.glob(f"rules.db.bak-v{now}-*"))
    assert len(backups) == 1
    assert stat.S_IMODE(backups[0].stat().st_mode) == 0o600
    monkeypatch.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS[:now])
    with RuleStore(backups[0]) as old:  # the backup is a complete store of the old version
        assert old.schema_version() == now
        assert [r.note for r in old.list()] == ["before"]


def test_a_v1_store_gains_the_method_exe_and_file_columns(db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        store_mod.MIGRATIONS[0](conn)
        conn.execute("INSERT INTO meta VALUES ('schema_version', 1)")
        conn.execute(
            "INSERT INTO rules (action, host, created, note) "
            "VALUES ('allow', 'a.example.test', 1, 'old')"
        )
    with RuleStore(db) as s:
        assert s.schema_version() == 2
        (old,) = s.list()
        assert (old.host, old.note, old.method, old.exe, old.file) == (
            "a.example.test",
            "old",
            None,
            None,
            None,
        )
        rid = s.add(
            Rule(Action.ALLOW, proto=Proto.FILE, file="~/.aws/*", access="read", exe="/usr/bin/*")
        )
        back = s.get(rid)
        assert back is not None and (back.file, back.access, back.exe) == (
            "~/.aws/*",
            "read",
            "/usr/bin/*",
        )
        rid = s.add(Rule(Action.DENY, host="api.example.test", path_prefix="/v1", method="POST"))
        back = s.get(rid)
        assert back is not None and back.method == "POST"


def test_root_gives_new_files_to_the_directory_owner(tmp_path: Path) -> None:
    """The gateway runs as root on a bind-mounted data dir owned by the host user."""
    need_root("like the gateway")
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, 4321, 4321)
    with RuleStore(home / "rules.db") as s:
        s.add(sample())
        s.backup(home / "copy.db")
        made = {p.name: p.stat() for p in home.iterdir()}
    assert {"rules.db", "rules.db-wal", "rules.db-shm", "copy.db"} <= set(made)
    for name, st in made.items():
        assert (st.st_uid, st.st_gid) == (4321, 4321), name
        assert stat.S_IMODE(st.st_mode) & 0o077 == 0, name

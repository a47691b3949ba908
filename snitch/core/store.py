"""The SQLite rule store shared by the gateway, the CLI and the dashboard.

Several processes open the same file at once. Every write is one ``BEGIN IMMEDIATE``
transaction (writers queue on the busy timeout instead of failing), the journal is WAL
(readers never block writers, and a process killed mid-transaction leaves only an
uncommitted WAL tail that SQLite discards), and each rule change bumps a ``generation``
counter in the same transaction so a gateway can poll it cheaply and reload.

Blocklists live in their own compact table (one text primary key per entry, no rowid),
never as rule rows.
"""

from __future__ import annotations

import builtins
import contextlib
import ipaddress
import logging
import operator
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from snitch.core.blocklist import Blocklist, normalize_entry
from snitch.core.grammar import is_synthetic_cidr, synthetic_target
from snitch.core.model import Action, Proto, Rule
from snitch.core.policy import check_rule

log = logging.getLogger(__name__)

COLUMNS = (
    "action", "host", "cidr", "port_lo", "port_hi", "proto", "scope", "priority",
    "path_prefix", "once_key", "session", "expires_at", "enabled", "source", "note",
    "created", "hits", "last_hit", "method", "exe", "file", "access",
)  # fmt: skip
_SELECT = f"SELECT id, {', '.join(COLUMNS)} FROM rules"
_INSERT = f"INSERT INTO rules ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
_BUMP = "UPDATE meta SET value = value + 1 WHERE key = ?"
_UPDATE = f"UPDATE rules SET {', '.join(c + ' = ?' for c in COLUMNS)} WHERE id = ?"
# Put in the note of a stored rule for a synthetic address when the store disables it.
SYNTHETIC_NOTE = "[disabled by coderun: a synthetic address, see `coderun rules list`]"


class StoreError(Exception):
    """The rule store cannot be used (corrupt, locked, too new); the message names the file."""


def _v1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    conn.execute(
        """CREATE TABLE rules (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            action TEXT NOT NULL, host TEXT, cidr TEXT,
            port_lo INTEGER NOT NULL DEFAULT 0, port_hi INTEGER NOT NULL DEFAULT 0,
            proto TEXT NOT NULL DEFAULT 'any', scope TEXT NOT NULL DEFAULT 'global',
            priority INTEGER NOT NULL DEFAULT 0, path_prefix TEXT, once_key TEXT,
            session TEXT, expires_at REAL, enabled INTEGER NOT NULL DEFAULT 1,
            source TEXT NOT NULL DEFAULT 'cli', note TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL, hits INTEGER NOT NULL DEFAULT 0, last_hit REAL)"""
    )
    conn.execute("CREATE INDEX rules_expires ON rules (expires_at) WHERE expires_at IS NOT NULL")
    conn.execute(
        "CREATE TABLE blocklist (entry TEXT PRIMARY KEY, source TEXT NOT NULL) WITHOUT ROWID"
    )
    conn.executemany("INSERT INTO meta VALUES (?, 0)", [("generation",), ("blocklist_generation",)])


def _v2(conn: sqlite3.Connection) -> None:
    """Request-level (method), per-program (exe) and file (file, access) rules."""
    for column in ("method", "exe", "file", "access"):
        conn.execute(f"ALTER TABLE rules ADD COLUMN {column} TEXT")


# MIGRATIONS[i] takes the schema from version i to i + 1; the store is at len(MIGRATIONS).
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2]


def _rule_from_row(row: tuple[Any, ...]) -> Rule:
    d = dict(zip(("id", *COLUMNS), row, strict=True))
    d["action"], d["proto"] = Action(d["action"]), Proto(d["proto"])
    d["enabled"] = bool(d["enabled"])
    return Rule(**d)


def _rule_values(rule: Rule) -> tuple[object, ...]:
    check_rule(rule)
    values = [getattr(rule, c) for c in COLUMNS]
    values[0], values[5] = str(rule.action), str(rule.proto)
    values[COLUMNS.index("enabled")] = int(rule.enabled)
    return tuple(values)


def _create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600; when root, give it to the directory's owner."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    try:
        if os.geteuid() == 0:
            st = os.stat(path.parent)
            os.fchown(fd, st.st_uid, st.st_gid)
    finally:
        os.close(fd)


class RuleStore:
    """Rules and blocklist entries in one SQLite file. Thread-safe; one connection."""

    def __init__(self, path: Path, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _create_private(self.path)
        except OSError as e:
            raise StoreError(f"rule store {self.path}: cannot create it: {e}") from e
        try:
            self._conn = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as e:
            raise self._error(e) from e
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._migrate()
        except sqlite3.Error as e:
            self._conn.close()
            raise self._error(e) from e
        except StoreError:
            self._conn.close()
            raise
        self.disabled_on_open = self._disable_synthetic()

    # -- plumbing ----------------------------------------------------------------------

    def _error(self, e: sqlite3.Error) -> StoreError:
        msg = str(e)
        if "locked" in msg or "busy" in msg:
            return StoreError(
                f"rule store {self.path} is locked: another process held it for more "
                f"than {self.timeout:g} s ({msg})"
            )
        if isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.OperationalError):
            return StoreError(
                f"rule store {self.path} is corrupt or not a rule store ({msg}); it was left "
                "untouched: move it aside to start afresh, or restore a .bak copy"
            )
        return StoreError(f"rule store {self.path}: {msg}")

    @contextlib.contextmanager
    def _write(self, *bump: str) -> Iterator[sqlite3.Connection]:
        """One write transaction; bumps the named meta counters in it."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    for key in bump:
                        conn.execute(_BUMP, (key,))
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise self._error(e) from e

    def _query(self, sql: str, params: Iterable[object] = ()) -> builtins.list[Any]:
        with self._lock:
            try:
                return self._conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as e:
                raise self._error(e) from e

    def _schema_version(self) -> int:
        tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master")}
        if "meta" not in tables:
            if tables:
                raise StoreError(f"{self.path} is an SQLite file but not a coderun rule store")
            return 0
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 1

    def _migrate(self) -> None:
        target = len(MIGRATIONS)
        version = self._schema_version()
        if version > target:
            raise StoreError(
                f"rule store {self.path} has schema version {version}, newer than this "
                f"coderun understands ({target}); upgrade coderun"
            )
        if version == target:
            return
        if version > 0:
            self.backup(self.path.with_name(f"{self.path.name}.bak-v{version}-{int(time.time())}"))
        with self._write() as conn:
            version = self._schema_version()  # another process may have migrated meanwhile
            for step in MIGRATIONS[version:]:
                step(conn)
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (target,))

    def backup(self, dest: Path) -> Path:
        """A consistent copy of the store (WAL included) at ``dest``, mode 0600."""
        _create_private(dest)
        with self._lock, contextlib.closing(sqlite3.connect(dest)) as out:
            self._conn.backup(out)
        return dest

    def schema_version(self) -> int:
        with self._lock:
            return self._schema_version()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> RuleStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _disable_synthetic(self) -> builtins.list[Rule]:
        """Switch off stored rules whose target is a synthetic address (an older coderun
        stored such rules from ask mode); they never match anyway (snitch.core.policy)."""
        sql = f"{_SELECT} WHERE enabled = 1 AND (cidr LIKE '198.18.%' OR cidr LIKE '198.19.%')"
        try:
            found = [r for r in map(_rule_from_row, self._query(sql)) if is_synthetic_cidr(r.cidr)]
            if not found:
                return []
            with self._write("generation") as conn:
                for rule in found:
                    rule.enabled = False
                    rule.note = f"{rule.note} {SYNTHETIC_NOTE}".strip()
                    conn.execute(
                        "UPDATE rules SET enabled = 0, note = ? WHERE id = ?", (rule.note, rule.id)
                    )
        except StoreError as e:  # locked: they stay stored, and never match all the same
            log.warning("could not disable rules for synthetic addresses: %s", e)
            return []
        for rule in found:
            log.warning("rule %s (%s) disabled: %s", rule.id, rule.describe(),
                        synthetic_target(str(rule.cidr)))  # fmt: skip
        return found

    # -- rules -------------------------------------------------------------------------

    def generation(self) -> int:
        """A counter bumped by every change to rules or the blocklist: poll it to reload."""
        return int(self._query("SELECT value FROM meta WHERE key = 'generation'")[0][0])

    def blocklist_generation(self) -> int:
        """Bumped only by blocklist changes, so the big set is reloaded only when needed."""
        rows = self._query("SELECT value FROM meta WHERE key = 'blocklist_generation'")
        return int(rows[0][0])

    def add(self, rule: Rule) -> int:
        """Store ``rule`` (its ``id`` is ignored) and return the new id."""
        return self.add_many([rule])[0]

    def add_many(
        self, rules: Iterable[Rule], *, blocklist: Iterable[str] = (), source: str = "import"
    ) -> builtins.list[int]:
        """Add rules (and blocklist entries) in one transaction: all of them or none."""
        with self._write("generation") as conn:
            ids = [int(conn.execute(_INSERT, _rule_values(r)).lastrowid or 0) for r in rules]
            if self._blocklist_insert(conn, blocklist, source):
                conn.execute(_BUMP, ("blocklist_generation",))
        return ids

    def get(self, rule_id: int) -> Rule | None:
        rows = self._query(f"{_SELECT} WHERE id = ?", (rule_id,))
        return _rule_from_row(rows[0]) if rows else None

    def update(self, rule: Rule) -> bool:
        """Overwrite the stored rule with ``rule.id``; False if there is none."""
        if rule.id is None:
            raise ValueError("update needs a rule with an id")
        with self._write("generation") as conn:
            return conn.execute(_UPDATE, (*_rule_values(rule), rule.id)).rowcount > 0

    def remove(self, rule_id: int) -> bool:
        with self._write("generation") as conn:
            return conn.execute("DELETE FROM rules WHERE id = ?", (rule_id,)).rowcount > 0

    def set_enabled(self, rule_id: int, enabled: bool) -> bool:
        """Switch a rule on or off; ValueError to switch on one for a synthetic address."""
        if enabled:
            rule = self.get(rule_id)
            if rule is not None and is_synthetic_cidr(rule.cidr):
                raise ValueError(f"rule {rule_id}: {synthetic_target(str(rule.cidr))}")
        with self._write("generation") as conn:
            sql = "UPDATE rules SET enabled = ? WHERE id = ?"
            return conn.execute(sql, (int(enabled), rule_id)).rowcount > 0

    def record_hits(self, hits: Mapping[int, tuple[int, float]]) -> None:
        """Add hit counts and move ``last_hit`` forward, in one transaction.

        Hits are bookkeeping, not a rule change: the generation is not bumped.
        """
        if not hits:
            return
        rows = [(count, last, rid) for rid, (count, last) in hits.items()]
        sql = (
            "UPDATE rules SET hits = hits + ?, last_hit = max(coalesce(last_hit, 0), ?) "
            "WHERE id = ?"
        )
        with self._write() as conn:
            conn.executemany(sql, rows)

    def list(self, include_disabled: bool = True) -> builtins.list[Rule]:
        where = "" if include_disabled else " WHERE enabled = 1"
        return [_rule_from_row(r) for r in self._query(f"{_SELECT}{where} ORDER BY id")]

    # -- blocklist ---------------------------------------------------------------------

    @staticmethod
    def _blocklist_insert(conn: sqlite3.Connection, entries: Iterable[str], source: str) -> int:
        before = conn.total_changes
        rows = []
        for e in entries:
            n = normalize_entry(e)
            if n is None:
                raise ValueError(f"bad blocklist entry {e!r}")
            rows.append((n, source))
        rows.sort()  # in key order the B-tree fills sequentially: 1M rows in seconds, not 20
        conn.executemany("INSERT OR IGNORE INTO blocklist VALUES (?, ?)", rows)
        return conn.total_changes - before

    def blocklist_add(self, entries: Iterable[str], source: str = "") -> int:
        """Add domains/networks (all or none); returns how many were new."""
        with self._write("generation", "blocklist_generation") as conn:
            return self._blocklist_insert(conn, entries, source)

    def blocklist_count(self) -> int:
        return int(self._query("SELECT count(*) FROM blocklist")[0][0])

    def blocklist_list(self, limit: int | None = None) -> builtins.list[str]:
        sql = "SELECT entry FROM blocklist ORDER BY entry LIMIT ?"
        return [str(r[0]) for r in self._query(sql, (-1 if limit is None else limit,))]

    def blocklist_load(self) -> Blocklist:
        """The whole blocklist as a compact in-memory set, for the gateway."""
        with self._lock:
            try:
                first = operator.itemgetter(0)  # map/itemgetter: no Python frame per row
                sql = "SELECT entry FROM blocklist WHERE entry {} '%/%'"
                nets = map(first, self._conn.execute(sql.format("LIKE")))
                return Blocklist(
                    map(first, self._conn.execute(sql.format("NOT LIKE"))), networks=nets
                )
            except sqlite3.Error as e:
                raise self._error(e) from e


    def blocklist_view(self) -> StoreBlocklist:
        """A lookup that asks SQLite each time: for one-off checks such as ``explain``."""
        return StoreBlocklist(self)


class StoreBlocklist:
    """BlocklistLookup answered by indexed queries instead of loading the whole set."""

    def __init__(self, store: RuleStore) -> None:
        self.store = store

    def _longest(self, candidates: builtins.list[str]) -> str | None:
        marks = ",".join("?" * len(candidates))
        rows = self.store._query(
            f"SELECT entry FROM blocklist WHERE entry IN ({marks})", candidates
        )
        found = {str(r[0]) for r in rows}
        return next((c for c in candidates if c in found), None)

    def match_name(self, name: str) -> str | None:
        labels = name.lower().rstrip(".").split(".")
        return self._longest([".".join(labels[i:]) for i in range(len(labels))])

    def match_ip(self, ip: str) -> str | None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        bits = addr.max_prefixlen
        nets = [ipaddress.ip_network(f"{addr}/{p}", strict=False) for p in range(bits, -1, -1)]
        return self._longest([str(n) for n in nets])


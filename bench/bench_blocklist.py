"""Blocklist benchmark: 1,000,000 domains through parse, store import, load and lookups.

    python bench/bench_blocklist.py            # full run, updates docs/benchmarks.md
    python bench/bench_blocklist.py --smoke    # 10,000 domains, prints only (used by a test)

Load, memory and lookups are measured in fresh child processes (one for coderun's
Blocklist, one for the baseline: a plain ``set`` of the same strings read from the same
table), so neither inherits the other's heap. Targets: lookup < 5 us, load < 3 s,
< 300 MB resident.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import random
import sqlite3
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from netbench.common import cpu_model  # bench/ is the script's own folder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from snitch.core.blocklist import load_blocklist_file  # noqa: E402
from snitch.core.model import Proto, Query  # noqa: E402
from snitch.core.policy import Policy  # noqa: E402
from snitch.core.store import RuleStore  # noqa: E402

TLDS = ["com", "net", "org", "io", "de", "co.uk", "info", "xyz", "ru", "cn"]
SECTION = "## Blocklist"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def random_domain(rng: random.Random) -> str:
    letters = string.ascii_lowercase + string.digits
    labels = ["".join(rng.choices(letters, k=rng.randint(4, 12))) for _ in range(rng.randint(1, 3))]
    return ".".join([*labels, rng.choice(TLDS)])


def per_call_ns(fn: Callable[[Any], object], names: Sequence[Any], batch: int = 200) -> float:
    """Median cost of one call, timed in batches to keep the timer out of it."""
    samples = []
    for i in range(0, len(names) - batch + 1, batch):
        chunk = names[i : i + batch]
        t0 = time.perf_counter_ns()
        for n in chunk:
            fn(n)
        samples.append((time.perf_counter_ns() - t0) / batch)
    return statistics.median(samples)


def workloads(domains: list[str], n: int, seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    listed = set(domains)
    hits = rng.sample(domains, min(n, len(domains)))
    misses: list[str] = []
    while len(misses) < len(hits):
        parts = f"www.{random_domain(rng)}".split(".")
        if not any(".".join(parts[i:]) in listed for i in range(len(parts))):
            misses.append(".".join(parts))
    return {"listed": hits, "subdomain": [f"cdn.{d}" for d in hits], "unlisted": misses}


def child(kind: str, db: Path, names_file: Path) -> dict[str, float]:
    """Runs in a fresh process: load one structure, then time lookups on it."""
    names: dict[str, list[str]] = json.loads(names_file.read_text())
    gc.collect()
    before = rss_mb()
    t0 = time.perf_counter()
    if kind == "coderun":
        with RuleStore(db) as store:
            bl = store.blocklist_load()
        fn: Callable[[str], object] = bl.match_name
    else:
        with sqlite3.connect(db) as conn:
            plain = {r[0] for r in conn.execute("SELECT entry FROM blocklist")}
        fn = plain.__contains__
    load_s = time.perf_counter() - t0
    gc.collect()
    out = {"load_s": load_s, "rss_mb": rss_mb() - before}
    for label, batch in names.items():
        out[f"{label}_ns"] = per_call_ns(fn, batch)
    if kind == "coderun":
        policy = Policy([], bl)
        queries = [Query(Proto.TCP, None, 443, (n,)) for n in names["subdomain"]]
        out["decide_ns"] = per_call_ns(policy.decide, queries)
    return out


def run_child(kind: str, db: Path, names_file: Path) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", kind, "--db", str(db), "--names", str(names_file)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return dict(json.loads(res.stdout))


def machine() -> dict[str, str]:
    cpu = cpu_model(platform.processor() or "unknown")
    uname = subprocess.run(["uname", "-a"], capture_output=True, text=True).stdout.strip()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {"uname": uname, "cpu": cpu, "cores": str(os.cpu_count()), "load": load}


def render(count: int, res: dict[str, float], cmd: str) -> str:
    m, c, b = machine(), res, {k[5:]: v for k, v in res.items() if k.startswith("base_")}

    def us(ns: float) -> str:
        return f"{ns / 1000:.2f} µs"

    def row(what: str, ours: str, base: str, ratio: float | None, target: str) -> str:
        r = f"{ratio:.2f}×" if ratio is not None else "–"
        return f"| {what} | {ours} | {base} | {r} | {target} |"

    rows = [
        "| what | coderun | baseline: plain `set` | ratio | target |",
        "| --- | --- | --- | --- | --- |",
        row(f"load {count:,} domains from the store", f"{c['load_s']:.2f} s",
            f"{b['load_s']:.2f} s", c["load_s"] / b["load_s"], "< 3 s"),
        row("resident memory growth", f"{c['rss_mb']:.0f} MB", f"{b['rss_mb']:.0f} MB",
            c["rss_mb"] / max(b["rss_mb"], 1e-9), "< 300 MB"),
        row("lookup, listed name (median)", us(c["listed_ns"]), us(b["listed_ns"]),
            c["listed_ns"] / b["listed_ns"], "< 5 µs"),
        row("lookup, subdomain of a listed name", us(c["subdomain_ns"]), us(b["subdomain_ns"]),
            c["subdomain_ns"] / b["subdomain_ns"], "< 5 µs"),
        row("lookup, unlisted name", us(c["unlisted_ns"]), us(b["unlisted_ns"]),
            c["unlisted_ns"] / b["unlisted_ns"], "< 5 µs"),
        row("`Policy.decide` on a blocklisted subdomain", us(c["decide_ns"]), "–", None, "–"),
        row("parse the hosts file", f"{c['parse_s']:.2f} s", "–", None, "–"),
        row("import into the SQLite store", f"{c['import_s']:.2f} s", "–", None, "–"),
    ]  # fmt: skip
    return "\n".join([
        SECTION, "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC with `{cmd}`.",
        "", f"- machine: `{m['uname']}`", f"- CPU: {m['cpu']}, {m['cores']} cores",
        f"- load average when done (1, 5, 15 min): {m['load']}",
        f"- Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}", "",
        "The baseline is a plain Python `set` of the same strings, loaded from the same table",
        "and probed with `in` (exact names only, so one probe even for a subdomain). coderun",
        "walks the name's suffixes, one probe per label. Lookups are medians over batches of",
        "200 calls; load and memory are measured in fresh processes.", "", *rows, "",
    ])  # fmt: skip


def update_docs(path: Path, section: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    start = text.find(SECTION + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + (text[end + 1 :] if end >= 0 else "")
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--smoke", action="store_true", help="10,000 domains, print only")
    ap.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--no-docs", action="store_true", help="do not update the docs")
    ap.add_argument("--child", choices=["coderun", "baseline"], help=argparse.SUPPRESS)
    ap.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--names", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.db, args.names)))
        return 0
    count = 10_000 if args.smoke else args.count
    rng = random.Random(20240501)
    with tempfile.TemporaryDirectory(prefix="coderun-bench-") as tmp:
        hosts = Path(tmp) / "hosts.txt"
        domains = list(dict.fromkeys(random_domain(rng) for _ in range(count)))
        with hosts.open("w") as f:
            f.write("# generated blocklist\n127.0.0.1 localhost\n")
            f.writelines(f"0.0.0.0 {d}\n" for d in domains)
        t0 = time.perf_counter()
        parsed = load_blocklist_file(hosts)
        parse_s = time.perf_counter() - t0
        db = Path(tmp) / "rules.db"
        with RuleStore(db) as store:
            t0 = time.perf_counter()
            added = store.blocklist_add(parsed.entries, source="bench")
            import_s = time.perf_counter() - t0
        assert added == len(domains), (added, len(domains))
        names = Path(tmp) / "names.json"
        names.write_text(json.dumps(workloads(domains, 20_000, 7)))
        del parsed
        res = run_child("coderun", db, names)
        res.update({f"base_{k}": v for k, v in run_child("baseline", db, names).items()})
        res.update(parse_s=parse_s, import_s=import_s)
    cmd = " ".join(["python bench/bench_blocklist.py", *(sys.argv[1:] if argv is None else argv)])
    section = render(len(domains), res, cmd)
    print(section)
    if not args.smoke and not args.no_docs:
        update_docs(args.docs, section)
        print(f"updated {args.docs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

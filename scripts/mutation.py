"""Mutation testing of the core, one module at a time (docs/testing.md, "Mutation testing").

    python scripts/mutation.py run [MODULE ...]   # mutmut on each module in turn (nice -n 10)
    python scripts/mutation.py report             # module -> killed/total -> % (markdown)
    python scripts/mutation.py survivors MODULE   # the surviving mutants' diffs
    python scripts/mutation.py rerun MODULE       # run the survivors again (after new tests)
    python scripts/mutation.py planted            # issue 13's planted bugs: each must fail a test

MODULE is a key of ``MODULES`` (``policy``, ``dns``, ``export`` ...); no MODULE means all.
Each module runs in ``mutants/MODULE/`` (git-ignored; delete it to start afresh) with the
shared settings of ``[tool.mutmut]`` in pyproject.toml narrowed to the module and its tests.
Mutants listed in ``tests/mutation_equivalents.toml`` behave exactly like the original code
and are left out of the total, each with its reason.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENTS = ROOT / "tests" / "mutation_equivalents.toml"
TARGET = 85.0


@dataclass(frozen=True)
class Module:
    """What one run mutates (paths as in ``only_mutate``) and the unit tests it runs."""

    files: tuple[str, ...]
    tests: tuple[str, ...]

    @property
    def patterns(self) -> tuple[str, ...]:
        """mutmut's names for the module's mutants (``snitch.core.policy.*``)."""
        return tuple(f.removesuffix("/*").removesuffix(".py").replace("/", ".") + ".*"
                     for f in self.files)  # fmt: skip

    def present(self) -> bool:
        return any(list(ROOT.glob(f)) for f in self.files)


def _tests(*paths: str, k: str, ignore: tuple[str, ...] = ()) -> tuple[str, ...]:
    """pytest arguments selecting a module's tests by name (``-k``): a new test file whose
    name says what it tests joins the runs without changing their settings (which would
    make mutmut start the module afresh)."""
    return (*paths, "-k", k, *(f"--ignore={i}" for i in ignore))


_SLOW = ("tests/snitch/test_fuzz_parsers.py", "tests/snitch/test_store_concurrency.py")
_DNS = _tests("tests/snitch", k="dns", ignore=_SLOW)

# Each module with the fast unit tests that are about it.
MODULES: dict[str, Module] = {
    "grammar": Module(
        ("snitch/core/grammar.py",),
        _tests("tests/snitch", k="duration or grammar or test_policy", ignore=_SLOW),
    ),
    "pathgrammar": Module(
        ("snitch/core/pathgrammar.py",),
        _tests("tests/snitch", k="rule_kinds or request_rules or grammar", ignore=_SLOW),
    ),
    "policy": Module(
        ("snitch/core/policy.py",),
        # (its 1,000-example property test takes minutes under mutmut's trampolines)
        _tests(
            "tests/snitch", k="(policy or rulebook or synthetic) and not property", ignore=_SLOW
        ),
    ),  # fmt: skip
    "explain": Module(
        ("snitch/core/explain.py",),
        _tests("tests/snitch", "tests/sandbox/test_rules_cli.py",
               k="(policy or explain or rules_cli) and not property", ignore=_SLOW),
    ),  # fmt: skip
    "precedence": Module(
        ("snitch/core/precedence.py",),
        _tests("tests/snitch", k="(policy or export) and not property", ignore=_SLOW),
    ),
    "blocklist": Module(
        ("snitch/core/blocklist.py",),
        (
            *_tests("tests/snitch", k="blocklist or policy or store", ignore=_SLOW),
            "--deselect=tests/snitch/test_blocklist.py::test_bench_smoke",
        ),
    ),  # fmt: skip
    "policyfile": Module(
        ("snitch/core/policyfile.py",),
        _tests(
            "tests/snitch",
            "tests/sandbox/test_rules_cli.py",
            k="policyfile or rules_cli",
            ignore=_SLOW,
        ),
    ),  # fmt: skip
    "dns": Module(("snitch/gateway/dns.py",), _DNS),
    "dnsmsg": Module(("snitch/gateway/dnsmsg.py",), _DNS),
    "export": Module(
        ("snitch/review/export/*",),
        _tests(
            "tests/snitch",
            "tests/export",
            "tests/sandbox/test_review_cli.py",
            k="export or review_cli",
            ignore=(*_SLOW, "tests/export/test_netns.py"),
        ),
    ),  # fmt: skip
}


@dataclass(frozen=True)
class Plant:
    """A bug planted by hand: ``old`` (found exactly once in ``path``) becomes ``new``, and
    at least one of ``tests`` must then fail."""

    what: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


# The small mutations issue 13 found alive under the old unit suite.
PLANTED = (
    Plant(
        "blocklist lookup in `rules explain` skips the exact name",
        "snitch/core/store.py",
        "for i in range(len(labels))]",
        "for i in range(1, len(labels))]",
        ("tests/snitch/test_store.py", "tests/sandbox/test_rules_cli.py"),
    ),
    Plant(
        "a week of 60,480 s",
        "snitch/core/grammar.py",
        '"w": 604800',
        '"w": 60480',
        ("tests/snitch/test_duration.py", "tests/snitch/test_grammar.py"),
    ),
    Plant(
        '3,600 s shown as "60m"',
        "snitch/core/grammar.py",
        "if rest >= size:",
        "if rest > size:",
        ("tests/snitch/test_duration.py", "tests/snitch/test_grammar.py"),
    ),
    Plant(
        "a policy-file error one line off (a key's line)",
        "snitch/core/policyfile.py",
        "return i + 1, len(s) - len(s.lstrip()) + 1\n        return None",
        "return i, len(s) - len(s.lstrip()) + 1\n        return None",
        ("tests/snitch/test_policyfile.py",),
    ),
    Plant(
        "a policy-file error one line off (a rule's header)",
        "snitch/core/policyfile.py",
        "return header + 1, len(s) - len(s.lstrip()) + 1",
        "return header, len(s) - len(s.lstrip()) + 1",
        ("tests/snitch/test_policyfile.py",),
    ),
    Plant(
        "nftables port ranges written one short",
        "snitch/review/export/nftables.py",
        'f"{self.lo}-{self.hi}"',
        'f"{self.lo}-{self.hi - 1}"',
        ("tests/snitch/test_export_formats.py",),
    ),
    Plant(
        "a batch pattern widened to `*.test`",
        "snitch/core/grammar.py",
        "if len(labels) >= 3:",
        "if len(labels) >= 2:",
        ("tests/tui/test_format.py",),
    ),
    Plant(
        "the DNS forwarder's dotted-label check removed",
        "snitch/gateway/dnsmsg.py",
        'if b"." in label:',
        "if False:",
        ("tests/snitch/test_dns_forwarder.py",),
    ),
    Plant(
        "the DNS forwarder's additional-record check removed",
        "snitch/gateway/dnsmsg.py",
        "if any(rr.rtype != QTYPE.OPT for rr in request.ar):",
        "if False:",
        ("tests/snitch/test_dns_forwarder.py",),
    ),
)

KILLED = {1, 3, 36, 37, -24, 24, 152, 255}  # test failure, pytest error, timeout, type check


@dataclass
class Score:
    killed: int = 0
    survived: int = 0
    excluded: int = 0

    @property
    def total(self) -> int:
        return self.killed + self.survived

    @property
    def percent(self) -> float:
        return 100.0 * self.killed / self.total if self.total else 0.0


def load_equivalents() -> dict[str, str]:
    """mutant name -> why it cannot be told apart from the original."""
    if not EQUIVALENTS.exists():
        return {}
    data = tomllib.loads(EQUIVALENTS.read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in data.get("equivalent", {}).items()}


def _read_json(path: Path) -> dict[str, Any]:
    """A ``.meta`` file, read again if a running mutmut is rewriting it."""
    for _ in range(20):
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return data
        except json.JSONDecodeError:
            time.sleep(0.1)
    return {}


def workdir(key: str) -> Path:
    return ROOT / "mutants" / key


def results() -> dict[str, int | None]:
    """Every mutant's exit code from mutmut's ``.meta`` files (None: not run yet)."""
    out: dict[str, int | None] = {}
    for key in MODULES:
        for meta in (workdir(key) / "mutants").rglob("*.py.meta"):
            data = _read_json(meta)
            for name, code in data.get("exit_code_by_key", {}).items():
                if module_of(name) == key:
                    out[name] = code
    return out


def module_of(name: str) -> str | None:
    for key, module in MODULES.items():
        if any(fnmatch.fnmatch(name, p) for p in module.patterns):
            return key
    return None


def scores() -> dict[str, Score]:
    equivalents = load_equivalents()
    out: dict[str, Score] = {}
    for name, code in sorted(results().items()):
        key = module_of(name)
        if key is None:
            continue
        score = out.setdefault(key, Score())
        if name in equivalents:
            score.excluded += 1
        elif code in KILLED:
            score.killed += 1
        else:  # survived (0), no tests (5, 33), not run (None), anything else
            score.survived += 1
    return out


def prepare(key: str) -> Path:
    """``mutants/KEY/``: the tree (linked) and pyproject.toml with ``[tool.mutmut]`` narrowed
    to the module and its tests; mutmut keeps its own ``mutants/`` in there."""
    module, work = MODULES[key], workdir(key)
    work.mkdir(parents=True, exist_ok=True)
    for part in ("snitch", "sandbox", "tui", "tests"):
        link = work / part
        if not link.is_symlink():
            link.symlink_to(ROOT / part, target_is_directory=True)
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    head, sep, rest = text.partition("[tool.mutmut]")
    _, nxt, tail = rest.partition("\n[")
    tests = list(module.tests)
    base = tomllib.loads(text)["tool"]["mutmut"]
    narrowed = [
        "[tool.mutmut]",
        f"source_paths = {json.dumps(base['source_paths'])}",
        f"only_mutate = {json.dumps(list(module.files))}",
        f"pytest_add_cli_args = {json.dumps(base.get('pytest_add_cli_args', []))}",
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}",
        "",
    ]
    _sync(work, module)
    new = head + "\n".join(narrowed) + (nxt and "\n[" + tail)
    target = work / "pyproject.toml"
    if not target.exists() or target.read_text(encoding="utf-8") != new:
        target.write_text(new, encoding="utf-8")
    return work


# The fuzz examples per property test (tests/snitch/test_dns_property.py): 1,000 take 20 s
# a run under mutmut, and each surviving mutant runs every test that reaches its function.
ENV = {"CODERUN_FUZZ_EXAMPLES": "50"}


def _sync(work: Path, module: Module) -> None:
    """Refresh mutmut's copies of the files it does not mutate (it copies a file only once,
    so after a rebase the tests would run against stale neighbours of the module)."""
    copies = work / "mutants"
    if not copies.exists():
        return
    for part in ("snitch", "sandbox", "tui"):
        for src in (ROOT / part).rglob("*.py"):
            rel = src.relative_to(ROOT)
            if any(fnmatch.fnmatch(str(rel), f) for f in module.files):
                continue  # mutmut regenerates the mutants of a changed module itself
            dst = copies / rel
            if not dst.exists() or dst.read_bytes() != src.read_bytes():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)


def run(keys: list[str], children: int) -> int:
    for key in keys:
        print(f"== {key}", flush=True)
        work = prepare(key)
        cmd = ["nice", "-n", "10", "mutmut", "run", f"--max-children={children}"]
        rc = subprocess.call(cmd, cwd=work, env={**os.environ, **ENV})
        if rc != 0:
            return rc
    return 0


def rerun(key: str, children: int) -> int:
    """Run a module's surviving mutants again: new tests join (mutmut finds them by the
    ``-k`` selection), killed mutants stay killed."""
    equivalents = load_equivalents()
    names = [
        n
        for n, code in sorted(results().items())
        if module_of(n) == key and code not in KILLED and n not in equivalents
    ]
    if not names:
        return 0
    work = prepare(key)
    cmd = ["nice", "-n", "10", "mutmut", "run", f"--max-children={children}", *names]
    return subprocess.call(cmd, cwd=work, env={**os.environ, **ENV})


def report() -> int:
    rows = scores()
    print("| module | killed / total | % | equivalent (excluded) |")
    print("| --- | --- | --- | --- |")
    low = False
    for key in MODULES:
        s = rows.get(key)
        if s is None:
            continue
        print(f"| {key} | {s.killed} / {s.total} | {s.percent:.1f} | {s.excluded} |")
        low = low or s.percent < TARGET
    return 1 if low else 0


def survivors(key: str) -> int:
    equivalents = load_equivalents()
    names = [
        n
        for n, code in sorted(results().items())
        if module_of(n) == key and code not in KILLED and n not in equivalents
    ]
    for name in names:
        subprocess.call(["mutmut", "show", name], cwd=workdir(key))
    print(f"{len(names)} surviving", file=sys.stderr)
    return 0


def planted() -> int:
    """Apply each planted bug to a copy of the tree and run its tests: they must fail."""
    alive = 0
    for plant in PLANTED:
        with tempfile.TemporaryDirectory(prefix="coderun-plant-") as tmp:
            work = Path(tmp)
            for part in ("snitch", "sandbox", "tui", "tests", "pyproject.toml"):
                src = ROOT / part
                if src.is_dir():
                    shutil.copytree(src, work / part, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(src, work / part)
            target = work / plant.path
            text = target.read_text(encoding="utf-8")
            if text.count(plant.old) != 1:
                print(f"STALE   {plant.what}: {plant.old!r} is not once in {plant.path}")
                alive += 1
                continue
            target.write_text(text.replace(plant.old, plant.new), encoding="utf-8")
            cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                   "-m", "not docker", *plant.tests]  # fmt: skip
            env = dict(os.environ, PYTHONPATH=str(work))
            done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
            failed = [ln for ln in done.stdout.splitlines() if ln.startswith("FAILED")]
            if done.returncode == 1 and failed:
                print(f"killed  {plant.what}: {failed[0].split(' - ')[0][7:]}")
            else:
                print(f"ALIVE   {plant.what} (pytest exit {done.returncode})")
                alive += 1
    return 1 if alive else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("modules", nargs="*", metavar="MODULE")
    r.add_argument("--children", type=int, default=2)
    sub.add_parser("report")
    rr = sub.add_parser("rerun")
    rr.add_argument("module", choices=list(MODULES))
    rr.add_argument("--children", type=int, default=2)
    sub.add_parser("planted")
    s = sub.add_parser("survivors")
    s.add_argument("module", choices=list(MODULES))
    a = ap.parse_args(argv)
    if a.cmd == "run":
        unknown = [m for m in a.modules if m not in MODULES]
        if unknown:
            ap.error(f"unknown module(s) {unknown}; choose from {sorted(MODULES)}")
        present = [k for k, m in MODULES.items() if m.present()]
        return run(a.modules or present, a.children)
    if a.cmd == "report":
        return report()
    if a.cmd == "rerun":
        return rerun(a.module, a.children)
    if a.cmd == "planted":
        return planted()
    return survivors(a.module)


if __name__ == "__main__":
    sys.exit(main())

"""The layer rules: import-linter's contracts in pyproject.toml, plus what they cannot say.

The contracts (docs/testing.md lists them with their reasons) are checked on the source
tree, and once more on a copy of it with a forbidden import planted, to show that each
kind of contract does fail.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("snitch", "sandbox", "tui")
LINT = (
    "import sys; from importlinter.cli import lint_imports; "
    "sys.exit(lint_imports(no_cache=True, no_logo=True, verbose=False))"
)


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter on the tree at ``root`` (its pyproject.toml, its packages)."""
    return subprocess.run(
        [sys.executable, "-c", LINT],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_contracts_hold() -> None:
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
    assert "KEPT" in result.stdout


PLANTED = {
    # contract name (pyproject.toml) -> files planted in a copy of the tree
    "tui reaches gateways only through snitch.review.client": {
        "tui/planted.py": "import snitch.gateway.flowgate\n",
    },
    "sandbox > tui > (snitch.review | snitch.gateway | snitch.fleet) > snitch.core": {
        "snitch/core/planted.py": "import snitch.review.client\n",
    },
    "the decision service needs only snitch.core": {
        "snitch/fleet/planted.py": "import snitch.gateway.asker\n",
    },
    "the gateway's code reaches no host-side package or library": {
        "snitch/gateway/planted.py": "import docker\n",
    },
    "snitch.core uses the standard library only": {
        "snitch/core/planted.py": "import dnslib\n",
    },
    "no import cycles": {
        "snitch/core/planted_a.py": "from snitch.core import planted_b\n",
        "snitch/core/planted_b.py": "def f() -> None:\n    from snitch.core import planted_a\n",
    },
}


@pytest.mark.parametrize("contract", sorted(PLANTED))
def test_a_planted_forbidden_import_breaks_its_contract(contract: str, tmp_path: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    for name, text in PLANTED[contract].items():
        (tmp_path / name).write_text(text)
    result = lint(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{contract} BROKEN" in result.stdout, result.stdout
    assert "planted" in result.stdout.split("Broken contracts", 1)[1]


# What import-linter cannot say: an allowlist of libraries, and a rule about statements.

DASHBOARD_LIBRARIES = {"textual", "rich"}


def test_the_dashboard_uses_only_textual_rich_and_the_standard_library() -> None:
    graph = grimp.build_graph(*PACKAGES, include_external_packages=True)
    found: dict[str, set[str]] = {}
    for module in sorted(m for m in graph.modules if m == "tui" or m.startswith("tui.")):
        for imported in graph.find_modules_directly_imported_by(module):
            top = imported.split(".")[0]
            ok = top in PACKAGES or top in sys.stdlib_module_names or top in DASHBOARD_LIBRARIES
            if not ok:
                found.setdefault(module, set()).add(imported)
    assert not found
    assert "textual" in graph.find_modules_directly_imported_by("tui.app")  # it sees them


def test_the_gateway_code_does_not_rely_on_assert() -> None:
    """The gateway runs with PYTHONOPTIMIZE (images/gateway/Dockerfile): asserts vanish."""
    for path in sorted((ROOT / "snitch").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        lines = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Assert)]
        assert not lines, f"{path.relative_to(ROOT)}: assert on lines {lines}"

"""The core stays free of the UI and of Docker; the UI reaches gateways only via the client."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imports(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def test_snitch_never_imports_docker_textual_or_the_host_side() -> None:
    for path, names in imports("snitch").items():
        bad = {n for n in names if n.split(".")[0] in ("docker", "textual", "tui", "sandbox")}
        assert not bad, f"{path} imports {bad}"


def test_tui_reaches_gateways_only_through_the_client() -> None:
    allowed = {"snitch.core.model", "snitch.review.client", "snitch.core.safetext"}
    for path, names in imports("tui").items():
        bad = {n for n in names if n.split(".")[0] in ("docker", "sandbox")}
        bad |= {n for n in names if n.startswith("snitch") and n not in allowed}
        assert not bad, f"{path} imports {bad}"


def test_the_checks_see_imports() -> None:
    """The scanner itself works: the snitch gateway does import its own modules."""
    assert "snitch.gateway.flowgate" in imports("snitch")["snitch/gateway/main.py"]


def test_the_gateway_code_does_not_rely_on_assert() -> None:
    """The gateway runs with PYTHONOPTIMIZE (images/gateway/Dockerfile): asserts vanish."""
    for path in sorted((ROOT / "snitch").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        lines = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Assert)]
        assert not lines, f"{path.relative_to(ROOT)}: assert on lines {lines}"

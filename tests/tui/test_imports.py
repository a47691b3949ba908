"""tui/ talks to gateways only through the client API: no docker, no snitch internals."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import tui

ALLOWED_SNITCH = {"snitch.core.model", "snitch.review.client", "snitch.core.safetext"}
THIRD_PARTY = {"textual", "rich"}


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_tui_imports_only_the_client_api() -> None:
    root = Path(tui.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert len(files) > 5
    for path in files:
        for module in imported_modules(path):
            top = module.split(".")[0]
            where = f"{path.relative_to(root.parent)} imports {module}"
            if top == "snitch":
                assert module in ALLOWED_SNITCH, where
            else:
                ok = top in sys.stdlib_module_names or top in THIRD_PARTY or top == "tui"
                assert ok, where
            assert top not in ("docker", "sandbox", "tests"), where

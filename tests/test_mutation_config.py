"""The mutation-testing set-up stays valid (the runs themselves are too slow for CI:
docs/testing.md, "Mutation testing")."""

from __future__ import annotations

import fnmatch
import importlib.util
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "mutation_script", ROOT / "scripts" / "mutation.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


SCRIPT = _script()
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mutmut"]
SOURCES = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("snitch/**/*.py"))


def test_mutmut_reads_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from mutmut.configuration import _load_config

    monkeypatch.chdir(ROOT)
    cfg = _load_config()
    assert all((ROOT / p).is_dir() for p in cfg.source_paths)
    assert cfg.should_mutate("snitch/core/policy.py")
    assert not cfg.should_mutate("snitch/core/store.py")
    assert not cfg.should_mutate("tests/snitch/test_policy.py")


def test_every_module_the_script_scores_is_mutated_and_exists() -> None:
    patterns = CONFIG["only_mutate"]
    present = 0
    for key, module in SCRIPT.MODULES.items():
        files = [s for s in SOURCES if any(fnmatch.fnmatch(s, f) for f in module.files)]
        assert all(any(fnmatch.fnmatch(f, p) for p in patterns) for f in files), key
        for name in module.patterns:  # mutmut's names for them
            dotted = name.removesuffix(".*")
            assert all(f.replace("/", ".").startswith(dotted) for f in files), key
        present += bool(files)
        paths = [t for t in module.tests if t.startswith("tests/")]
        assert paths and all((ROOT / t).exists() for t in paths), key
        ignored = [t.split("=", 1)[1] for t in module.tests if t.startswith("--ignore=")]
        assert all((ROOT / t).exists() for t in ignored), key
    assert present == len(SCRIPT.MODULES)


def test_the_selected_tests_exist() -> None:
    for arg in CONFIG["pytest_add_cli_args_test_selection"]:
        path = arg.split("=", 1)[1] if arg.startswith("--") else arg
        assert (ROOT / path.split("::")[0]).exists(), arg


@pytest.mark.parametrize("plant", SCRIPT.PLANTED, ids=lambda p: p.what)
def test_each_planted_bug_still_applies_and_names_existing_tests(plant: Any) -> None:
    """``scripts/mutation.py planted`` can plant it (run that to see each one killed)."""
    text = (ROOT / plant.path).read_text(encoding="utf-8")
    assert text.count(plant.old) == 1
    assert all((ROOT / t.split("::")[0]).exists() for t in plant.tests)

"""Key bindings have ids, and a keys file (``~/.config/coderun/keys.toml``) remaps them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from click.testing import CliRunner

import tui
from sandbox import paths
from sandbox.cli import main as cli
from snitch.core.model import Action, DecisionRequest
from tests.fakes import FakeGateway, pending
from tests.tui.conftest import make_app, queue_ready, wait_for
from tui.keymap import BOUND, KeymapError, binding_ids, bindings, load_keymap
from tui.screens.decide import DecisionDialog

SIZE = (80, 24)


def classes_with_bindings() -> set[str]:
    """Every class in tui/ that declares BINDINGS, and every Binding(...) without an id."""
    found = set()
    for path in Path(tui.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(t, ast.Name) and t.id == "BINDINGS"
                for stmt in node.body
                if isinstance(stmt, ast.Assign)
                for t in stmt.targets
            ):
                found.add(node.name)
    return found


def test_every_binding_has_an_id_of_its_own() -> None:
    assert {cls.__name__ for cls in BOUND} == classes_with_bindings()
    every = list(bindings())
    assert len(every) > 25 and all(b.id for b in every), [b.key for b in every if not b.id]
    assert len(binding_ids()) == len(every)  # no id twice
    assert binding_ids()["pending.allow"] == "a"


def test_a_keys_file_maps_ids_to_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    assert load_keymap(path) == {}  # no file: the default keys
    path.write_text('"pending.allow" = "y"\n"app.quit" = "ctrl+q, q"\n"rules.new" = "+"\n')
    assert load_keymap(path) == {"pending.allow": "y", "app.quit": "ctrl+q,q", "rules.new": "+"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('"pending.alow" = "y"\n', "no key binding has the id 'pending.alow'"),
        ('"pending.allow" = 1\n', "pending.allow: keys are a string"),
        ('"pending.allow" = ""\n', "pending.allow: keys are a string"),
        ('"pending.allow" = "y,,z"\n', "pending.allow: not a key: ''"),
        ('"pending.allow" = "ctrl+ y"\n', "pending.allow: not a key: 'ctrl+ y'"),
        ('"pending.allow" = "y\n', "keys.toml"),
    ],
)
def test_a_bad_keys_file_is_refused_with_where(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(text)
    with pytest.raises(KeymapError, match="keys.toml") as refused:
        load_keymap(path)
    assert message in str(refused.value)


@pytest.mark.asyncio
async def test_a_remapped_key_acts_and_the_old_one_does_not() -> None:
    fake = FakeGateway(pending=[pending("p1", "api.example.test")])
    app = make_app(fake, keymap={"pending.allow": "y", "decide.deny": "n"})
    async with app.run_test(size=SIZE) as pilot:
        await queue_ready(pilot, app, 1)
        await pilot.press("a")  # no longer allows
        await pilot.pause(0.2)
        assert fake.decisions == []
        await pilot.press("y")
        await wait_for(pilot, lambda: fake.decisions)
        assert fake.decisions == [DecisionRequest(Action.ALLOW, pending_id="p1")]
        # a dialog's binding too: enter opens it, n denies there now
        fake.add_pending(pending("p2", "www.example.test"))
        fake.resolve("p1")
        view = app.pending_view
        await wait_for(pilot, lambda: list(view.rows) == ["0:p2"] and view.settled)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DecisionDialog))
        await pilot.press("n")
        await wait_for(pilot, lambda: len(fake.decisions) == 2)
        assert fake.decisions[1].action is Action.DENY and fake.decisions[1].pending_id == "p2"


def test_the_dashboard_command_refuses_a_bad_keys_file_first(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODERUN_CONFIG", str(tmp_path / "config"))
    assert paths.keys_file() == tmp_path / "config" / "keys.toml"
    (tmp_path / "config").mkdir()
    paths.keys_file().write_text('"pending.alow" = "y"\n')
    result = CliRunner().invoke(cli, ["dashboard"])
    assert result.exit_code == 1
    assert "keys.toml: no key binding has the id 'pending.alow'" in result.output
    paths.keys_file().write_text('"pending.allow" = "y"\n')  # control: a good file passes
    result = CliRunner().invoke(cli, ["dashboard"])
    assert result.exit_code == 1 and "no running session" in result.output

"""Placeholder secrets: what the gateway finds and replaces (snitch/gateway/secrets.py),
the settings that carry them and the host's options (sandbox/secrets.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from sandbox.secrets import SecretSpecError, parse_secrets
from snitch.core.settings import RunSettings, SecretBinding, SettingsError, from_json, to_json
from snitch.gateway.secrets import bound_to, find, read_values, substitute

PH = "coderun-secret-" + "ab" * 16
OTHER = "coderun-secret-" + "cd" * 16
TOKEN = SecretBinding("TOKEN", PH, ("api.example.test", "*.files.example.test"))
KEY = SecretBinding("KEY", OTHER, ())


def basic(text: str) -> bytes:
    return b"Basic " + base64.b64encode(text.encode())


def test_a_placeholder_is_found_in_url_headers_body_and_basic_auth() -> None:
    assert find([TOKEN, KEY], f"http://h/x?t={PH}", [], b"") == [TOKEN]
    assert find([TOKEN, KEY], "http://h/", [(b"X-Key", OTHER.encode())], b"") == [KEY]
    assert find([TOKEN], "http://h/", [], b"a=" + PH.encode()) == [TOKEN]
    assert find([TOKEN], "http://h/", [(b"Authorization", basic(f"me:{PH}"))], b"") == [TOKEN]
    assert find([TOKEN], "http://h/", [(b"Authorization", b"Basic !!notb64")], b"") == []
    assert find([TOKEN, KEY], "http://h/", [(b"Accept", b"*/*")], b"plain") == []


def test_substitution_replaces_every_place() -> None:
    headers = [(b"Authorization", basic(f"me:{PH}")), (b"X-Token", f"t {PH}".encode())]
    url, out, body = substitute({PH: b"s3cr3t"}, f"http://h/{PH}", headers, PH.encode() * 2)
    assert url == "http://h/s3cr3t"
    assert out == [(b"Authorization", basic("me:s3cr3t")), (b"X-Token", b"t s3cr3t")]
    assert body == b"s3cr3ts3cr3t"


def test_bound_hosts_match_exactly_or_by_glob() -> None:
    assert bound_to(TOKEN, "api.example.test")
    assert bound_to(TOKEN, "API.example.test.")
    assert bound_to(TOKEN, "a.files.example.test")
    assert not bound_to(TOKEN, "api.example.test.evil.test")
    assert not bound_to(TOKEN, "example.test")
    assert not bound_to(KEY, "api.example.test")  # bound nowhere: never released


def test_the_values_file_is_read_once_and_removed(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    assert read_values(path) is None
    path.write_text(json.dumps({"TOKEN": "s3cr3t"}))
    assert read_values(path) == {"TOKEN": b"s3cr3t"}
    assert not path.exists()


def test_run_settings_carry_placeholders_not_values() -> None:
    run = RunSettings(secrets=(TOKEN,))
    text = to_json(run)
    assert from_json(RunSettings, text) == run
    with pytest.raises(SettingsError):
        SecretBinding("TOKEN", "not-a-placeholder")
    with pytest.raises(SettingsError):
        SecretBinding("BAD NAME", PH)


def test_options_take_values_from_the_environment_or_a_file(tmp_path: Path) -> None:
    file = tmp_path / "key"
    file.write_text("from-file\n")
    bindings, values = parse_secrets(
        ("TOKEN", f"KEY=@{file}"), ("TOKEN=api.example.test,b.example.test",),
        {"TOKEN": "from-env"},
    )  # fmt: skip
    assert values == {"TOKEN": "from-env", "KEY": "from-file"}
    token, key = bindings
    assert token.hosts == ("api.example.test", "b.example.test") and key.hosts == ()
    assert token.placeholder.startswith("coderun-secret-") and token.placeholder != key.placeholder
    assert "from-env" not in to_json(RunSettings(secrets=bindings))


@pytest.mark.parametrize(
    ("specs", "hosts", "env"),
    [
        (("TOKEN",), (), {}),  # not in the environment
        (("TOKEN",), (), {"TOKEN": ""}),  # empty
        (("TOKEN=value",), (), {}),  # a value on the command line (it would be in ps)
        (("TOKEN",), ("OTHER=a.test",), {"TOKEN": "x"}),  # a host for no secret
        (("TOKEN",), ("TOKEN=10.0.0.1",), {"TOKEN": "x"}),  # an address, not a name
        (("TOKEN",), ("TOKEN",), {"TOKEN": "x"}),  # no =
        (("TOKEN=@/nonexistent/file",), (), {}),
    ],
)
def test_bad_options_are_refused(specs: tuple[str, ...], hosts: tuple[str, ...],
                                 env: dict[str, str]) -> None:  # fmt: skip
    with pytest.raises(SecretSpecError):
        parse_secrets(specs, hosts, env)

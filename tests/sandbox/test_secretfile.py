"""--secret-file: the masking of credentials files (no Docker, no FUSE)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.secrets import SecretSpecError
from sandbox.shares.secretfile import mask_file, mask_text, parse_secret_file
from snitch.core.settings import PLACEHOLDER

HOSTS = ("registry.example.test",)


def masked(text: str, stem: str = "cred") -> tuple[str, dict[str, str]]:
    out = mask_text(text, stem, HOSTS)
    for b in out.bindings:
        assert PLACEHOLDER.fullmatch(b.placeholder) and b.hosts == HOSTS
    return out.text.decode(), out.values


def test_ini_dotenv_npmrc_yaml_json_netrc() -> None:
    text = "\n".join([
        "[default]",
        "aws_access_key_id = AKIDEXAMPLE",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG",
        "region = eu-west-1",
        "export API_TOKEN='tok-123'",
        'DB_PASSWORD="p w"',
        "//registry.example.test/:_authToken=npm_abc",
        "oauth_token: gho_456",
        '  "identitytoken": "idt-789", "user": "me"',
        "machine api.example.test login me password hunter2",
        "# token = not-a-secret-comment",
        "",
    ])  # fmt: skip
    out, values = masked(text)
    for secret in ("wJalrXUtnFEMI/K7MDENG", "tok-123", "p w", "npm_abc", "gho_456",
                   "idt-789", "hunter2"):  # fmt: skip
        assert secret not in out, secret
        assert secret in values.values()
    for kept in ("AKIDEXAMPLE", "region = eu-west-1", '"user": "me"', "login me",
                 "# token = not-a-secret-comment", "[default]"):  # fmt: skip
        assert kept in out, kept
    assert "export API_TOKEN='coderun-secret-" in out  # quotes kept around the placeholder
    assert out.count("\n") == text.count("\n")
    assert set(values) == {
        "cred_aws_secret_access_key", "cred_API_TOKEN", "cred_DB_PASSWORD", "cred__authToken",
        "cred_oauth_token", "cred_identitytoken", "cred_password",
    }  # fmt: skip


def test_one_value_twice_is_one_secret_and_references_are_left_alone() -> None:
    out, values = masked("TOKEN=abc\nOTHER_TOKEN=abc\nREF_TOKEN=${TOKEN}\nEMPTY_TOKEN=\n")
    assert list(values.values()) == ["abc"]
    lines = out.splitlines()
    assert lines[0].split("=")[1] == lines[1].split("=")[1]
    assert lines[2:] == ["REF_TOKEN=${TOKEN}", "EMPTY_TOKEN="]


def test_names_are_unique_for_different_values() -> None:
    _, values = masked("a.token=1\nb.token=2\n", stem=".npmrc")
    assert values == {"npmrc_token": "1", "npmrc_token_2": "2"}


def test_specs(tmp_path: Path) -> None:
    f = tmp_path / "creds"
    f.write_text("password = x\n")
    spec = parse_secret_file(f"{f}:/home/u/.creds=a.example.test,*.b.example.test")
    assert (spec.host, spec.target) == (f, "/home/u/.creds")
    assert spec.hosts == ("a.example.test", "*.b.example.test")
    assert parse_secret_file(f"{f}=").hosts == ()
    assert mask_file(spec).values == {"creds_password": "x"}
    for bad, message in [
        (str(f), "expected PATH"),
        (f"{tmp_path}/nope=a.example.test", "is not a file"),
        (f"{f}=192.0.2.1", "is not a host name"),
    ]:
        with pytest.raises(SecretSpecError, match=message):
            parse_secret_file(bad)
    f.write_bytes(b"\xff\xfe")
    with pytest.raises(SecretSpecError, match="not UTF-8"):
        mask_file(spec)

"""``coderun serve``'s options: checked before it listens."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from sandbox.cli import main as cli_main


def serve(*args: str) -> object:
    return CliRunner().invoke(cli_main, ["serve", *args])


def test_bad_options_are_refused_before_listening(home: Path, tmp_path: Path) -> None:
    token = tmp_path / "token"
    short = tmp_path / "short"
    short.write_text("abc\n")
    cert = tmp_path / "cert.pem"
    cert.write_text("not a certificate")
    for args, said in (
        (["--listen", "nowhere", "--token-file", str(token)], "HOST:PORT"),
        (["--listen", "127.0.0.1:70000", "--token-file", str(token)], "HOST:PORT"),
        ([], "--token-file"),
        (["--token-file", str(token), "--tls-cert", str(cert)], "go together"),
        (["--token-file", str(short)], "at least 16"),
        (
            ["--token-file", str(token), "--tls-cert", str(cert), "--tls-key", str(cert)],
            "cannot use",
        ),
    ):
        result = serve(*args)
        assert result.exit_code != 0 and said in result.output, (args, result.output)  # type: ignore[attr-defined]


def test_a_missing_token_file_is_made_private(home: Path, tmp_path: Path) -> None:
    from snitch.fleet.tls import read_token

    token = tmp_path / "new" / "token"
    made = read_token(token, create=True)
    assert len(made) >= 16 and token.stat().st_mode & 0o777 == 0o600
    assert read_token(token) == made

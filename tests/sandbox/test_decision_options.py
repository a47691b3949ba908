"""``coderun run --decision-service``: checked on the host before anything starts; what
the gateway gets (the URL and labels in its settings, the token only as a private file)."""

from __future__ import annotations

from pathlib import Path

from sandbox.config import SessionConfig
from snitch.core.model import Mode
from snitch.fleet.tls import ensure_certificate
from tests.sandbox.test_settings import Stop, captured, invoke

__all__ = ["captured"]  # the fixture, used by name below
TOKEN = "t" * 32


def files(tmp_path: Path) -> tuple[Path, Path]:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    cert, _ = ensure_certificate(tmp_path / "tls", ["192.0.2.10"])
    return token, cert


def test_a_run_with_a_service_asks_it_with_its_labels(
    captured: list[SessionConfig], tmp_path: Path
) -> None:
    token, cert = files(tmp_path)
    result = invoke("--decision-service", "https://192.0.2.10:8743", "--decision-token-file",
                    str(token), "--decision-ca", str(cert), "--label", "team=web",
                    "--label", "env=ci", "--", "true")  # fmt: skip
    assert isinstance(result.exception, Stop), result.output
    config = captured[0]
    assert config.run.decision_service == "https://192.0.2.10:8743"
    assert config.run.labels == ("team=web", "env=ci")
    assert config.run.mode is Mode.ASK  # implied, even without a terminal
    assert config.decision_credentials == {"token": TOKEN, "ca": cert.read_text()}
    assert TOKEN not in repr(config) and TOKEN not in str(config.run)


def test_bad_service_options_are_usage_errors(
    captured: list[SessionConfig], tmp_path: Path
) -> None:
    token, cert = files(tmp_path)
    short = tmp_path / "short"
    short.write_text("abc")
    base = ["--decision-token-file", str(token), "--decision-ca", str(cert)]
    for args, said in (
        (["--decision-service", "http://192.0.2.10:8743", *base], "https:// only"),
        (["--decision-service", "https://192.0.2.10"], "--decision-token-file"),
        (
            [
                "--decision-service",
                "https://192.0.2.10",
                "--decision-token-file",
                str(short),
                "--decision-ca",
                str(cert),
            ],
            "not a token",
        ),
        (["--decision-service", "https://192.0.2.10", *base, "--mode", "enforce"], "ask mode"),
        (
            [
                "--decision-service",
                "https://192.0.2.10",
                "--decision-token-file",
                str(token),
                "--decision-ca",
                str(token),
            ],
            "not a PEM certificate",
        ),
        (["--label", "no value"], "bad label"),
        (["--decision-token-file", str(token)], "need --decision-service"),
    ):
        result = invoke(*args, "--", "true")
        assert result.exit_code == 2 and said in result.output, (args, result.output)
    assert captured == []

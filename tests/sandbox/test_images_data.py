"""The Dockerfiles and the demo are package data; builds never write into the package
(sandbox/data, sandbox/images.py); one progress line per image (sandbox/buildview.py)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from click.testing import CliRunner

import sandbox
from sandbox import images
from sandbox.buildview import ERASE_LINE, BuildView
from sandbox.cli import main as cli
from sandbox.data import examples_dir, images_dir


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CODERUN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_every_image_and_the_demo_are_package_data() -> None:
    package = Path(sandbox.__file__).resolve().parent
    for name in images.NAMES:
        folder = images_dir() / name
        assert (folder / "Dockerfile").is_file(), folder
        assert folder.resolve().is_relative_to(package.parent), folder
    assert (examples_dir() / "install.sh").is_file()
    assert (examples_dir() / "demo-policy.toml").is_file()


def test_the_gateway_wheels_go_to_the_cache_dir(cache: Path) -> None:
    house = images.wheelhouse("gateway")
    assert house is not None and house.is_relative_to(cache)
    assert images.wheelhouse("sandbox-bash") is None  # no requirements.txt


def test_a_build_context_is_a_copy_with_its_wheels(cache: Path) -> None:
    house = images.wheelhouse("gateway")
    assert house is not None
    house.mkdir(parents=True)
    (house / "x-1.0-py3-none-any.whl").write_bytes(b"wheel")
    (house / ".complete").touch()
    with images.build_context("gateway") as context:
        assert (context / "Dockerfile").read_bytes() == (
            images_dir() / "gateway" / "Dockerfile"
        ).read_bytes()
        assert (context / "wheels" / "x-1.0-py3-none-any.whl").read_bytes() == b"wheel"
        assert not context.is_relative_to(images_dir().resolve())
    assert not context.exists()
    with images.build_context("sandbox-bash") as context:
        assert (context / "wheels").is_dir() and not any((context / "wheels").iterdir())


def test_an_image_tag_depends_on_its_inputs_only() -> None:
    assert images.image_tag("gateway", "base1") == images.image_tag("gateway", "base1")
    assert images.image_tag("gateway", "base1") != images.image_tag("gateway", "base2")
    assert images.image_tag("gateway", "b") != images.image_tag("internet", "b")


def build_once(view: BuildView, lines: list[str], ok: bool = True) -> None:
    view.start("gateway", "coderun-gateway:abc")
    for line in lines:
        view.output(line)
    view.finish(ok)


STEPS = ["Step 1/2 : FROM base\n", " ---> 1234\n", "Step 2/2 : RUN \x1b]0;title\x07 x\n"]


def test_without_a_terminal_one_line_per_image() -> None:
    out = io.StringIO()
    build_once(BuildView(out, live=False), STEPS)
    build_once(BuildView(out, live=False), STEPS, ok=False)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("gateway") and "built coderun-gateway:abc in" in lines[0]
    assert "FAILED" in lines[1]


def test_on_a_terminal_the_line_is_rewritten_and_output_is_escaped() -> None:
    out = io.StringIO()
    build_once(BuildView(out, live=True), STEPS)
    text = out.getvalue()
    assert text.count("\n") == 1  # one line left when it is done
    assert ERASE_LINE + "|" in text or ERASE_LINE + "/" in text  # the spinner
    assert "step 2/2: RUN \\x1b]0;title\\x07 x" in text
    assert "\x07" not in text and "\x1b]" not in text


def test_verbose_shows_every_line_escaped() -> None:
    out = io.StringIO()
    build_once(BuildView(out, verbose=True, live=False), STEPS)
    text = out.getvalue()
    assert "  ---> 1234\n" in text and "\\x1b]0;title" in text and "\x1b" not in text


def test_version_says_where_coderun_and_its_data_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODERUN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CODERUN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CODERUN_CONFIG", str(tmp_path / "config"))
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("coderun ")
    assert f"data dir: {tmp_path / 'home'}" in result.output
    assert f"cache:    {tmp_path / 'cache'}" in result.output
    assert f"config:   {tmp_path / 'config'}" in result.output
    assert str(Path(sandbox.__file__).resolve().parent.parent) in result.output
    assert not {p.name for p in tmp_path.iterdir()} & {"home", "cache", "config"}  # makes nothing


def test_a_failed_build_is_an_error_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail(*_a: object, **_kw: object) -> dict[str, str]:
        raise images.ImageError("building gateway: exit 100\nlast lines of the build:\nE: x")

    monkeypatch.setattr("sandbox.cli.images.docker_client", lambda: None)
    monkeypatch.setattr(images, "build", fail)
    result = CliRunner().invoke(cli, ["images", "build"])
    assert result.exit_code == 1 and "Error: building gateway: exit 100" in result.output
    assert "Traceback" not in result.output

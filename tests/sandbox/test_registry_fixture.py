"""The registry fixture's content (images/registry/build_fixtures.py), built on the host:
what each registry serves matches what the lock files and indexes say (no Docker)."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import re
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

from sandbox.images import image_dir


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    fixtures = load("build_fixtures", image_dir("registry") / "build_fixtures.py")
    out = tmp_path_factory.mktemp("srv")
    src = image_dir("registry")
    fixtures.npm(src, out)
    fixtures.pip(src, out)
    fixtures.go(src, out)
    return out


def test_npm_lock_files_match_the_tarballs(built: Path) -> None:
    lock = json.loads((built / "projects/npm-backdoor/package-lock.json").read_text())
    for key, node in lock["packages"].items():
        if not key:
            continue
        name = key.removeprefix("node_modules/")
        url = f"http://registry.npmjs.test/{name}/-/{name}-1.0.0.tgz"
        assert node["resolved"] == url
        data = (built / url.removeprefix("http://")).read_bytes()
        digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
        assert node["integrity"] == f"sha512-{digest}"
        packument = json.loads((built / "registry.npmjs.test" / name / "index.json").read_text())
        assert packument["versions"]["1.0.0"]["dist"]["integrity"] == node["integrity"]
    backdoor = lock["packages"]["node_modules/colorful-logger"]
    assert backdoor["hasInstallScript"] is True  # npm ci runs its postinstall
    tgz = built / "registry.npmjs.test/colorful-logger/-/colorful-logger-1.0.0.tgz"
    with tarfile.open(tgz) as t:
        meta = json.load(t.extractfile("package/package.json"))  # type: ignore[arg-type]
    assert meta["scripts"]["postinstall"] == "node lib/setup.js"


def test_pip_index_links_carry_the_files_hashes(built: Path) -> None:
    page = (built / "pypi.test/simple/fastjson-utils/index.html").read_text()
    (href, digest), = re.findall(r'href="(/packages/[^#"]+)#sha256=([0-9a-f]+)"', page)
    sdist = built / "pypi.test" / href.lstrip("/")
    assert hashlib.sha256(sdist.read_bytes()).hexdigest() == digest
    with tarfile.open(sdist) as t:
        assert "fastjson-utils-1.0.0/setup.py" in t.getnames()


def test_go_proxy_and_go_sum(built: Path) -> None:
    base = built / "proxy.golang.test/fixtures.test/greet/@v"
    assert (base / "list").read_text() == "v1.0.0\n"
    assert json.loads((base / "v1.0.0.info").read_text())["Version"] == "v1.0.0"
    sums = (built / "projects/go/go.sum").read_text().splitlines()
    assert [s.split()[1] for s in sums] == ["v1.0.0", "v1.0.0/go.mod"]
    assert all(re.fullmatch(r"h1:[A-Za-z0-9+/]{43}=", s.split()[2]) for s in sums)

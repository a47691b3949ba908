"""Build the package registry fixture (run at image build time): every package under
``packages/`` published the way its registry serves it, under ``OUT/<host>/``, and the
example projects under ``OUT/projects/`` with their lock files.

Hosts (names resolved by the demo internet, never looked up anywhere else):
``registry.npmjs.test`` (npm: packuments and tarballs), ``pypi.test`` (a PEP 503
simple index: a wheel, a backdoored sdist and Debian's setuptools wheel for pip's build
isolation), ``rubygems.test`` (bundler's compact index and .gem files, built by
``gem build`` beforehand) and ``proxy.golang.test`` (a GOPROXY).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path

NPM = "registry.npmjs.test"
PYPI = "pypi.test"
GEMS = "rubygems.test"
GOPROXY = "proxy.golang.test"
MTIME = 1_700_000_000  # fixed: the same inputs give the same bytes
SETUPTOOLS_WHEELS = Path("/usr/share/python-wheels")


def sha(data: bytes, name: str) -> str:
    return hashlib.new(name, data).hexdigest()


def files_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def tgz(folder: Path, prefix: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for path in files_of(folder):
            data = path.read_bytes()
            info = tarfile.TarInfo(f"{prefix}/{path.relative_to(folder)}")
            info.size, info.mtime, info.mode = len(data), MTIME, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def npm(src: Path, out: Path) -> dict[str, dict[str, str]]:
    published: dict[str, dict[str, str]] = {}
    for folder in sorted((src / "packages/npm").iterdir()):
        meta = json.loads((folder / "package.json").read_text())
        name, version = meta["name"], meta["version"]
        data = tgz(folder, "package")
        file = f"{name}-{version}.tgz"
        url = f"http://{NPM}/{name}/-/{file}"
        integrity = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
        write(out / NPM / name / "-" / file, data)
        has_script = bool(set(meta.get("scripts", {})) & {"preinstall", "install", "postinstall"})
        entry = {**meta, "dist": {"tarball": url, "shasum": sha(data, "sha1"),
                                  "integrity": integrity}}  # fmt: skip
        if has_script:
            entry["hasInstallScript"] = True
        packument = {"name": name, "dist-tags": {"latest": version}, "versions": {version: entry}}
        write(out / NPM / name / "index.json", json.dumps(packument, indent=1))
        published[name] = {"version": version, "resolved": url, "integrity": integrity,
                           "script": "1" if has_script else ""}  # fmt: skip
    for project in ("npm", "npm-backdoor"):
        folder = out / "projects" / project
        shutil.copytree(src / "projects" / project, folder)
        meta = json.loads((folder / "package.json").read_text())
        packages: dict[str, object] = {
            "": {"name": meta["name"], "version": meta["version"],
                 "dependencies": meta["dependencies"]},
        }  # fmt: skip
        for dep in meta["dependencies"]:
            pub = published[dep]
            node: dict[str, object] = {"version": pub["version"], "resolved": pub["resolved"],
                                       "integrity": pub["integrity"], "license": "MIT"}  # fmt: skip
            if pub["script"]:
                node["hasInstallScript"] = True
            packages[f"node_modules/{dep}"] = node
        lock = {"name": meta["name"], "version": meta["version"], "lockfileVersion": 3,
                "requires": True, "packages": packages}  # fmt: skip
        write(folder / "package-lock.json", json.dumps(lock, indent=2) + "\n")
    return published


def wheel(folder: Path, name: str, version: str) -> tuple[str, bytes]:
    """A pure-Python wheel of the package folder ``folder/name``."""
    dist = f"{name}-{version}.dist-info"
    members = {f"{p.relative_to(folder)}": p.read_bytes() for p in files_of(folder)}
    members[f"{dist}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    )
    members[f"{dist}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: coderun-fixture\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n"
    )
    record = []
    for path, data in members.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    members[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in members.items():
            zf.writestr(zipfile.ZipInfo(path, (2023, 11, 14, 0, 0, 0)), data)
    return f"{name}-{version}-py3-none-any.whl", buf.getvalue()


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pip(src: Path, out: Path) -> None:
    dists: list[tuple[str, bytes]] = [
        wheel(src / "packages/pip/hello_fixture", "hello_fixture", "1.0.0"),
        ("fastjson-utils-1.0.0.tar.gz",
         tgz(src / "packages/pip/fastjson-utils", "fastjson-utils-1.0.0")),
    ]  # fmt: skip
    # pip builds an sdist in an isolated environment with setuptools from the index.
    dists += [(p.name, p.read_bytes()) for p in SETUPTOOLS_WHEELS.glob("setuptools-*.whl")]
    by_project: dict[str, list[str]] = {}
    for file, data in dists:
        write(out / PYPI / "packages" / file, data)
        project = normalize(re.split(r"-(?=[0-9])", file, maxsplit=1)[0])
        link = f'<a href="/packages/{file}#sha256={sha(data, "sha256")}">{file}</a><br>'
        by_project.setdefault(project, []).append(link)
    page = "<!DOCTYPE html>\n<html><body>\n{}\n</body></html>\n"
    for project, links in by_project.items():
        write(out / PYPI / "simple" / project / "index.html", page.format("\n".join(links)))
    index = [f'<a href="/simple/{p}/">{p}</a><br>' for p in sorted(by_project)]
    write(out / PYPI / "simple" / "index.html", page.format("\n".join(index)))
    for project in ("pip", "pip-backdoor"):
        shutil.copytree(src / "projects" / project, out / "projects" / project)


def gems(src: Path, out: Path) -> None:
    """Bundler's compact index (``/versions``, ``/info/NAME``) and ``/gems/*.gem``."""
    lines = ["created_at: 2023-11-14T00:00:00Z", "---"]
    names = []
    for gem in sorted((src / "packages/gem").rglob("*.gem")):
        data = gem.read_bytes()
        name, version = gem.stem.rsplit("-", 1)
        write(out / GEMS / "gems" / gem.name, data)
        info = f"---\n{version} |checksum:{sha(data, 'sha256')}\n"
        write(out / GEMS / "info" / name, info)
        lines.append(f"{name} {version} {sha(info.encode(), 'md5')}")
        names.append(name)
    write(out / GEMS / "versions", "\n".join(lines) + "\n")
    write(out / GEMS / "names", "---\n" + "".join(f"{n}\n" for n in sorted(names)))
    for project in ("ruby", "ruby-backdoor"):
        shutil.copytree(src / "projects" / project, out / "projects" / project)


def h1(files: dict[str, bytes]) -> str:
    """Go's dirhash Hash1 over ``name -> content``."""
    summary = "".join(f"{sha(files[n], 'sha256')}  {n}\n" for n in sorted(files))
    return "h1:" + base64.b64encode(hashlib.sha256(summary.encode()).digest()).decode()


def go(src: Path, out: Path) -> None:
    sums = []
    for folder in sorted((src / "packages/go").iterdir()):
        gomod = (folder / "go.mod").read_bytes()
        module = gomod.decode().split()[1]
        version = "v1.0.0"
        prefix = f"{module}@{version}/"
        members = {prefix + str(p.relative_to(folder)): p.read_bytes() for p in files_of(folder)}
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for path, data in members.items():
                zf.writestr(zipfile.ZipInfo(path, (2023, 11, 14, 0, 0, 0)), data)
        base = out / GOPROXY / module / "@v"
        write(base / "list", version + "\n")
        write(base / f"{version}.info", json.dumps({"Version": version,
                                                    "Time": "2023-11-14T00:00:00Z"}))  # fmt: skip
        write(base / f"{version}.mod", gomod)
        write(base / f"{version}.zip", buf.getvalue())
        sums.append(f"{module} {version} {h1(members)}")
        sums.append(f"{module} {version}/go.mod {h1({'go.mod': gomod})}")
    shutil.copytree(src / "projects" / "go", out / "projects" / "go")
    write(out / "projects" / "go" / "go.sum", "\n".join(sums) + "\n")


def main() -> None:
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    npm(src, out)
    pip(src, out)
    gems(src, out)
    go(src, out)
    print(f"fixtures in {out}:", *sorted(str(p.relative_to(out)) for p in files_of(out)),
          sep="\n  ")  # fmt: skip


if __name__ == "__main__":
    main()

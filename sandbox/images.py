"""Build coderun's images from ``images/``, tagged by a hash of their inputs.

The Dockerfiles take ``ARG BASE`` (``debian:trixie-slim`` by default). Where no
registry can be reached, a local base is made with debootstrap and ``docker import``;
where ``debian:trixie-slim`` is already present or can be pulled, that is used.
An image is rebuilt only when its inputs (base id, Dockerfile, files beside it) change.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import docker.errors

IMAGES_DIR = Path(__file__).resolve().parent.parent / "images"
NAMES = ("gateway", "internet", "sandbox-bash", "sandbox-python")
RUNTIMES = {"bash": "sandbox-bash", "python": "sandbox-python"}
UPSTREAM_BASE = "debian:trixie-slim"
DEBOOTSTRAP_SUITE = "trixie"
DEBOOTSTRAP_PACKAGES = (
    "python3,iptables,iproute2,libnetfilter-queue1,ca-certificates,curl,"
    "python3-netfilterqueue,python3-dnslib"
)
LABEL = "coderun.image"
GATEWAY_PYTHON = "3.13"  # Debian trixie's, in the gateway image

Progress = Callable[[str], None]


class ImageError(RuntimeError):
    pass


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _hash_dir(path: Path, seed: str) -> str:
    """A hash of an image's inputs (wheels/ is derived from requirements.txt: skipped)."""
    h = hashlib.sha256(seed.encode())
    skip = {"__pycache__", "wheels"}
    for file in sorted(p for p in path.rglob("*") if p.is_file() and not skip & set(p.parts)):
        h.update(str(file.relative_to(path)).encode())
        h.update(file.read_bytes())
    return h.hexdigest()[:12]


def _exists(client: docker.DockerClient, ref: str) -> Any:
    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def base_image(client: docker.DockerClient, progress: Progress = _stderr) -> str:
    """The base image reference to build on, making a local one when needed."""
    if os.environ.get("CODERUN_BASE_IMAGE"):
        return os.environ["CODERUN_BASE_IMAGE"]
    key = hashlib.sha256(f"{DEBOOTSTRAP_SUITE}:{DEBOOTSTRAP_PACKAGES}".encode()).hexdigest()[:12]
    local = f"coderun-base:{DEBOOTSTRAP_SUITE}-{key}"
    if _exists(client, local):
        return local
    if _exists(client, UPSTREAM_BASE):
        return UPSTREAM_BASE
    if shutil.which("debootstrap") and os.geteuid() == 0:
        build_base(client, local, progress)
        return local
    progress(
        f"no local base image; docker will pull {UPSTREAM_BASE} "
        "(without a registry: install debootstrap and run `coderun images build` as root)"
    )
    return UPSTREAM_BASE


def build_base(client: docker.DockerClient, tag: str, progress: Progress = _stderr) -> None:
    """debootstrap a minimal Debian and import it as an image (~1 min, needs root)."""
    with tempfile.TemporaryDirectory(prefix="coderun-base-") as tmp:
        root = Path(tmp) / "rootfs"
        progress(f"building base image {tag} with debootstrap ({DEBOOTSTRAP_SUITE})...")
        cmd = [
            "debootstrap",
            "--variant=minbase",
            f"--include={DEBOOTSTRAP_PACKAGES}",
            DEBOOTSTRAP_SUITE,
            str(root),
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(("I: Retrieving InRelease", "I: Installing core", "I: Base")):
                progress("  " + line.strip())
        if proc.wait() != 0:
            raise ImageError(f"debootstrap failed (exit {proc.returncode}): {' '.join(cmd)}")
        for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (root / sub).glob("*"):
                if entry.is_file():
                    entry.unlink()
        tarball = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(tarball), "."], check=True)
        repo, _, version = tag.partition(":")
        client.api.import_image_from_file(str(tarball), repository=repo, tag=version)
        progress(f"base image {tag} ready")


def prepare_wheels(name: str, progress: Progress = _stderr) -> dict[str, str]:
    """Fill images/NAME/wheels/ for requirements.txt (host-side download, cached);
    returns the build args. Where the host cannot download either, the image's own pip
    tries PyPI (PIP_ARGS="")."""
    folder = IMAGES_DIR / name
    req = folder / "requirements.txt"
    wheels = folder / "wheels"
    if not req.exists():
        return {}
    wheels.mkdir(exist_ok=True)
    stamp = wheels / ".requirements"
    if stamp.exists() and stamp.read_text() == req.read_text():
        return {}
    progress(f"downloading Python wheels for the {name} image (host side) ...")
    for old in wheels.glob("*.whl"):
        old.unlink()
    arch = platform.machine()
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
           "--python-version", GATEWAY_PYTHON, "--implementation", "cp",
           "--platform", f"manylinux_2_28_{arch}", "--platform", f"manylinux_2_17_{arch}",
           "--platform", f"manylinux2014_{arch}", "--platform", "any",
           "-d", str(wheels), "-r", str(req)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        progress(f"  host download failed, the image will use PyPI: {proc.stderr.strip()[-300:]}")
        return {"PIP_ARGS": ""}
    stamp.write_text(req.read_text())
    return {}


def image_tag(name: str, base_id: str) -> str:
    return f"coderun-{name}:{_hash_dir(IMAGES_DIR / name, base_id)}"


def build(
    client: docker.DockerClient,
    names: tuple[str, ...] = NAMES,
    progress: Progress = _stderr,
    force: bool = False,
) -> dict[str, str]:
    """Make sure every named image exists; return name -> tag."""
    base = base_image(client, progress)
    base_obj = _exists(client, base)
    base_id = base_obj.id if base_obj is not None else base
    tags: dict[str, str] = {}
    for name in names:
        tag = image_tag(name, base_id)
        tags[name] = tag
        if not force and _exists(client, tag):
            continue
        progress(f"building {tag} ...")
        args = {"BASE": base, **prepare_wheels(name, progress)}
        stream = client.api.build(
            path=str(IMAGES_DIR / name),
            tag=tag,
            buildargs=args,
            rm=True,
            forcerm=True,
            decode=True,
            labels={LABEL: name},
        )
        for chunk in stream:
            if "error" in chunk:
                raise ImageError(f"building {name}: {chunk['error'].strip()}")
            line = str(chunk.get("stream", "")).strip()
            if line.startswith("Step "):
                progress("  " + line)
        client.images.get(tag).tag(f"coderun-{name}", "latest")
    return tags


def resolve_runtime(client: docker.DockerClient, image: str, tags: dict[str, str]) -> str:
    """``bash``/``python`` map to coderun's runtimes; anything else is an image name."""
    if image in RUNTIMES:
        return tags[RUNTIMES[image]]
    if _exists(client, image) is None:
        raise ImageError(f"image {image!r} not found locally (coderun never pulls sandbox images)")
    return image

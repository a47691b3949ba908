"""Build coderun's images from its Dockerfiles, tagged by a hash of their inputs.

The Dockerfiles (``images/`` in the repository, package data of ``sandbox.data`` in an
install) take ``ARG BASE`` (``debian:trixie-slim`` by default). Where no registry can be
reached, a local base is made with debootstrap and ``docker import``; where
``debian:trixie-slim`` is already present or can be pulled, that is used. An image is
rebuilt only when its inputs (base id, Dockerfile, files beside it) change.

Each build runs in a temporary copy of its folder (the install is never written to);
the gateway's Python wheels are downloaded by the installing environment's pip into
coderun's cache dir (``paths.cache_dir()``) and copied into that build context.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors

from sandbox import paths
from sandbox.buildview import BuildView
from sandbox.data import images_dir

# The language runtimes a sandbox can use (``--image NAME``) and their images.
RUNTIMES = {
    "bash": "sandbox-bash",
    "python": "sandbox-python",
    "node": "sandbox-node",
    "go": "sandbox-go",
    "ruby": "sandbox-ruby",
    "rails": "sandbox-rails",
}
# What a run, the pool and the tests need; the other runtimes are built on first use.
NAMES = ("gateway", "internet", "sandbox-bash", "sandbox-python")
# Every image coderun knows (``coderun images list``); ``registry`` serves the package
# fixtures of the package-manager tests and benchmarks.
ALL_NAMES = (*NAMES, "sandbox-node", "sandbox-go", "sandbox-ruby", "sandbox-rails", "registry")
# An image built on another of coderun's images (its BASE) instead of the base image.
PARENTS = {"sandbox-rails": "sandbox-ruby", "registry": "sandbox-ruby"}
UPSTREAM_BASE = "debian:trixie-slim"
DEBOOTSTRAP_SUITE = "trixie"
DEBOOTSTRAP_PACKAGES = (
    "python3,iptables,iproute2,libnetfilter-queue1,ca-certificates,curl,"
    "python3-netfilterqueue,python3-dnslib"
)
LABEL = "coderun.image"
GATEWAY_PYTHON = "3.13"  # Debian trixie's, in the gateway image
SKIPPED = {"__pycache__", "wheels"}  # never inputs of an image (wheels/ is made per build)

Progress = Callable[[str], None]


class ImageError(RuntimeError):
    pass


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def image_dir(name: str) -> Path:
    return images_dir() / name


def _hash_dir(path: Path, seed: str) -> str:
    """A hash of an image's inputs (wheels/ is derived from requirements.txt: skipped)."""
    h = hashlib.sha256(seed.encode())
    inputs = (p for p in path.rglob("*") if p.is_file() and not SKIPPED & set(p.parts))
    for file in sorted(inputs):
        h.update(str(file.relative_to(path)).encode())
        h.update(file.read_bytes())
    return h.hexdigest()[:12]


def _exists(client: docker.DockerClient, ref: str) -> Any:
    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def local_base_tag() -> str:
    key = hashlib.sha256(f"{DEBOOTSTRAP_SUITE}:{DEBOOTSTRAP_PACKAGES}".encode()).hexdigest()[:12]
    return f"coderun-base:{DEBOOTSTRAP_SUITE}-{key}"


def present_base(client: docker.DockerClient) -> str | None:
    """The base image that a build would use, if it is here already (nothing is made)."""
    if os.environ.get("CODERUN_BASE_IMAGE"):
        return os.environ["CODERUN_BASE_IMAGE"]
    for ref in (local_base_tag(), UPSTREAM_BASE):
        if _exists(client, ref):
            return ref
    return None


def base_image(client: docker.DockerClient, progress: Progress = _stderr) -> str:
    """The base image reference to build on, making a local one when needed."""
    present = present_base(client)
    if present is not None:
        return present
    local = local_base_tag()
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


def wheelhouse(name: str) -> Path | None:
    """The cache folder of the wheels for image ``name``'s requirements.txt (None: the
    image has none). Keyed by the requirements, the gateway's Python and this machine."""
    req = image_dir(name) / "requirements.txt"
    if not req.exists():
        return None
    key = hashlib.sha256(
        f"{GATEWAY_PYTHON}:{platform.machine()}:".encode() + req.read_bytes()
    ).hexdigest()[:12]
    return paths.cache_dir() / "wheels" / f"{name}-{key}"


def prepare_wheels(name: str, progress: Progress = _stderr) -> dict[str, str]:
    """Fill the image's wheelhouse in the cache dir (host-side download with this
    environment's pip, once); returns the build args. Where the host cannot download
    either, the image's own pip tries PyPI (PIP_ARGS="")."""
    folder = wheelhouse(name)
    if folder is None:
        return {}
    done = folder / ".complete"
    if done.exists():
        return {}
    progress(f"downloading Python wheels for the {name} image into {folder} ...")
    partial = folder.with_name(folder.name + f".{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    arch = platform.machine()
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
           "--python-version", GATEWAY_PYTHON, "--implementation", "cp",
           "--platform", f"manylinux_2_28_{arch}", "--platform", f"manylinux_2_17_{arch}",
           "--platform", f"manylinux2014_{arch}", "--platform", "any",
           "-d", str(partial), "-r", str(image_dir(name) / "requirements.txt")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        progress(f"  host download failed, the image will use PyPI: {proc.stderr.strip()[-300:]}")
        return {"PIP_ARGS": ""}
    (partial / ".complete").touch()
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):  # another build that finished first is as good
        partial.rename(folder)
    shutil.rmtree(partial, ignore_errors=True)
    return {}


@contextlib.contextmanager
def build_context(name: str) -> Iterator[Path]:
    """A temporary copy of the image's folder, with its wheels (an empty ``wheels/``
    when it has none, as its Dockerfile may COPY it)."""
    with tempfile.TemporaryDirectory(prefix=f"coderun-build-{name}-") as tmp:
        context = Path(tmp) / name
        shutil.copytree(image_dir(name), context, ignore=shutil.ignore_patterns(*SKIPPED))
        wheels = context / "wheels"
        wheels.mkdir()
        house = wheelhouse(name)
        if house is not None and (house / ".complete").exists():
            for wheel in house.glob("*.whl"):
                try:
                    os.link(wheel, wheels / wheel.name)
                except OSError:
                    shutil.copy2(wheel, wheels / wheel.name)
        yield context


def image_tag(name: str, base_id: str) -> str:
    """The tag of an image: a hash of its inputs and of what it is built on (the base
    image's id, or the tag of its parent image, which hashes the base in turn)."""
    parent = PARENTS.get(name)
    seed = image_tag(parent, base_id) if parent else base_id
    return f"coderun-{name}:{_hash_dir(image_dir(name), seed)}"


def with_parents(names: tuple[str, ...]) -> tuple[str, ...]:
    """``names`` with the images they are built on, parents first, each once."""
    out: list[str] = []

    def add(name: str) -> None:
        if name in PARENTS:
            add(PARENTS[name])
        if name not in out:
            out.append(name)

    for name in names:
        if name not in ALL_NAMES:
            raise ImageError(f"unknown image {name!r} (coderun's images: {', '.join(ALL_NAMES)})")
        add(name)
    return tuple(out)


def image_name(runtime: str) -> str:
    """``node`` -> ``sandbox-node``; an image's own name is kept."""
    return RUNTIMES.get(runtime, runtime)


def runtime_images(image: str) -> tuple[str, ...]:
    """The coderun image a sandbox ``image`` (``--image``) is, if it is one of ours."""
    return (RUNTIMES[image],) if image in RUNTIMES else ()


def base_id_of(client: docker.DockerClient, base: str) -> str:
    found = _exists(client, base)
    return str(found.id) if found is not None else base


def build(
    client: docker.DockerClient,
    names: tuple[str, ...] = NAMES,
    progress: Progress | None = None,
    force: bool = False,
    view: BuildView | None = None,
) -> dict[str, str]:
    """Make sure every named image (and the images they are built on) exists; return
    name -> tag. Each image built shows one progress line (``view``; sandbox/buildview.py)."""
    view = view if view is not None else BuildView()
    say = progress if progress is not None else view.message
    base = base_image(client, say)
    base_id = base_id_of(client, base)
    tags: dict[str, str] = {}
    for name in with_parents(names):
        tag = image_tag(name, base_id)
        tags[name] = tag
        if not force and _exists(client, tag):
            continue
        parent = tags[PARENTS[name]] if name in PARENTS else base
        args = {"BASE": parent, **prepare_wheels(name, say)}
        view.start(name, tag)
        ok = False
        try:
            _build_one(client, name, tag, args, view)
            ok = True
        finally:
            view.finish(ok)
    return tags


def _build_one(
    client: docker.DockerClient, name: str, tag: str, args: dict[str, str], view: BuildView
) -> None:
    with build_context(name) as context:
        stream = client.api.build(
            path=str(context),
            tag=tag,
            buildargs=args,
            rm=True,
            forcerm=True,
            decode=True,
            labels={LABEL: name},
        )
        for chunk in stream:
            if "error" in chunk:
                raise ImageError(
                    f"building {name}: {str(chunk['error']).strip()}\n"
                    f"last lines of the build:\n{view.failure_tail()}"
                )
            view.output(str(chunk.get("stream", "")))
    client.images.get(tag).tag(f"coderun-{name}", "latest")


def resolve_runtime(client: docker.DockerClient, image: str, tags: dict[str, str]) -> str:
    """``bash``, ``python``, ``node``... map to coderun's runtimes (built when missing);
    anything else is an image name."""
    if image in RUNTIMES:
        name = RUNTIMES[image]
        if name not in tags:
            tags.update(build(client, (name,)))
        return tags[name]
    if _exists(client, image) is None:
        raise ImageError(f"image {image!r} not found locally (coderun never pulls sandbox images)")
    return image

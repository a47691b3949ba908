"""``coderun doctor``: can coderun run here? Each check says what it found and, when it
fails, what to do about it.

Checks, in order (a check that needs one that failed is reported ``skipped``, which is
not a pass):

- ``engine``: a Docker engine answers, and it is local (coderun bind-mounts the
  gateway's code and the session folders: a remote engine would not see them).
- ``images``: the images coderun builds exist for the current Dockerfiles and base.
- ``kernel``: in a throwaway gateway container (no network but loopback), a NEW flow
  is queued on NFQUEUE and judged, conntrack lists it, and a file bind-mounted from
  this machine is read back (snitch/gateway/selftest.py).
- ``data dir``: writable, this user's and private (0700).
- ``secrets``: the API tokens and the interception CA's files are 0600 and this user's.
- ``leftovers``: no containers, networks or volumes of interrupted runs (``coderun gc``).
- ``disk``: free space for session logs where the data dir is.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import stat
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sandbox import paths
from snitch.core.loglimit import LogLimits

OK, FAIL, SKIPPED = "ok", "fail", "skipped"
MIN_FREE_BYTES = 10 * (LogLimits().max_bytes or 0)  # ten sessions' capped logs
PROBE_SECONDS = 30


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK, FAIL or SKIPPED
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"


# -- engine and images -------------------------------------------------------------------


def connect() -> tuple[Any, Check]:
    """A client (None when no engine answers) and the engine check."""
    import docker
    import docker.errors

    try:
        client = docker.from_env(timeout=20)
        version = client.version()
    except docker.errors.DockerException as exc:
        return None, Check(
            "engine", FAIL, f"no Docker engine answers ({exc})",
            "start one: `sudo dockerd &` or `sudo service docker start` (Debian: "
            "`sudo apt-get install docker.io`); as another user, be in the docker group",
        )  # fmt: skip
    url = str(client.api.base_url)
    host = os.environ.get("DOCKER_HOST", "")
    local = url.startswith("http+docker://localhost") or any(
        name in host for name in ("localhost", "127.0.0.1", "[::1]")
    )
    where = f"Docker {version.get('Version', '?')} at {host or 'the default socket'}"
    if not local:
        return client, Check(
            "engine", FAIL, f"{where} is not on this machine",
            "coderun bind-mounts its code and session folders: use a local engine "
            "(unset DOCKER_HOST, or run coderun where the engine runs)",
        )  # fmt: skip
    return client, Check("engine", OK, f"{where} (local)")


def check_images(client: Any) -> tuple[dict[str, str], Check]:
    from sandbox import images

    base = images.present_base(client)
    if base is None:
        return {}, Check("images", FAIL, "no base image", "run `coderun images build`")
    base_id = images.base_id_of(client, base)
    tags = {name: images.image_tag(name, base_id) for name in images.NAMES}
    missing = [tag for tag in tags.values() if not _image_exists(client, tag)]
    if missing:
        return tags, Check(
            "images", FAIL, f"not built for the current Dockerfiles: {', '.join(missing)}",
            "run `coderun images build`",
        )  # fmt: skip
    return tags, Check("images", OK, f"{len(tags)} images current (base {base})")


def _image_exists(client: Any, ref: str) -> bool:
    import docker.errors

    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        return False
    return True


# -- the kernel, through a throwaway gateway container ------------------------------------


def probe_kernel(client: Any, gateway_image: str) -> list[Check]:
    """The kernel and bind-mount checks, from one throwaway container."""
    from sandbox.gateway_code import gateway_volumes
    from sandbox.labels import ROLE, owner_labels

    token = secrets.token_hex(8)
    ident = "doctor-" + uuid.uuid4().hex[:8]
    labels = {**owner_labels(ident), ROLE: "doctor"}
    with tempfile.TemporaryDirectory(prefix="coderun-doctor-") as tmp:
        (Path(tmp) / "token").write_text(token)
        os.chmod(tmp, 0o755)
        volumes = {**gateway_volumes(), tmp: {"bind": "/probe", "mode": "ro"}}
        try:
            out, err, code = _probe(client, gateway_image, ident, labels, volumes)
        except Exception as exc:  # the engine refused, or the probe hung: say so
            return [Check("kernel", FAIL, f"the probe container failed: {exc}",
                          "see the message; `coderun doctor` again after fixing the engine")]
    try:
        report = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        detail = f"the probe failed (exit {code}): {err.strip()[-300:]}"
        if "No module named" in err:
            return [Check("mounts", FAIL, detail, _REMOTE_FIX),
                    Check("kernel", SKIPPED, "needs the gateway's code mounted")]  # fmt: skip
        return [Check("kernel", FAIL, detail, "see the message; `coderun images build --force`")]
    return _kernel_checks(report, token)


def _probe(
    client: Any, image: str, ident: str, labels: dict[str, str], volumes: dict[str, Any]
) -> tuple[str, str, int]:
    """Run the self-test in a throwaway container: its stdout, stderr and exit code."""
    container = client.containers.create(
        image, entrypoint=["python3", "-m", "snitch.gateway.selftest"],
        name=f"coderun-{ident}", network_mode="none", cap_drop=["ALL"],
        cap_add=["NET_ADMIN"], volumes=volumes, labels=labels,
    )  # fmt: skip
    try:
        container.start()
        code = int(container.wait(timeout=PROBE_SECONDS).get("StatusCode", -1))
        out = bytes(container.logs(stdout=True, stderr=False)).decode(errors="replace")
        err = bytes(container.logs(stdout=False, stderr=True)).decode(errors="replace")
        return out, err, code
    finally:
        with contextlib.suppress(Exception):
            container.remove(force=True)


_REMOTE_FIX = (
    "files of this machine do not reach the engine's containers: use a local engine "
    "(unset DOCKER_HOST); rootless or VM engines must share this path"
)


def _kernel_checks(report: dict[str, Any], token: str) -> list[Check]:
    mount = report.get("mount", {})
    found: list[Check] = []
    if mount.get("ok") and mount.get("detail") == token:
        found.append(Check("mounts", OK, "a file of this machine bind-mounts into a container"))
    else:
        found.append(Check("mounts", FAIL, f"a bind-mounted file did not arrive: "
                           f"{mount.get('detail', '?')}", _REMOTE_FIX))  # fmt: skip
    queue, track = report.get("nfqueue", {}), report.get("conntrack", {})
    if queue.get("ok") and track.get("ok"):
        found.append(Check("kernel", OK, f"NFQUEUE: {queue['detail']}; {track['detail']}"))
    else:
        bad = "; ".join(str(r.get("detail")) for r in (queue, track) if not r.get("ok"))
        found.append(Check(
            "kernel", FAIL, bad,
            "load the kernel modules: `sudo modprobe -a nfnetlink_queue nf_conntrack "
            "nf_conntrack_netlink xt_NFQUEUE xt_conntrack` (a container cannot load them)",
        ))  # fmt: skip
    return found


# -- the data dir -------------------------------------------------------------------------


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_data_dir(path: Path) -> Check:
    if not path.exists():
        parent = _existing_parent(path)
        if os.access(parent, os.W_OK | os.X_OK):
            return Check("data dir", OK, f"{path} will be made (0700) on first use")
        return Check("data dir", FAIL, f"{path} is missing and {parent} is not writable",
                     f"make it: `mkdir -m 700 -p {path}`, or set CODERUN_HOME")  # fmt: skip
    st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        return Check("data dir", FAIL, f"{path} is not a directory",
                     "move it away or set CODERUN_HOME to a folder")  # fmt: skip
    if st.st_uid != os.geteuid():
        return Check("data dir", FAIL, f"{path} belongs to uid {st.st_uid}, not to you",
                     "set CODERUN_HOME to a folder you own")  # fmt: skip
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return Check("data dir", FAIL, f"{path} is {mode:04o}: others can read your logs",
                     f"`chmod 700 {path}` (coderun also tightens it on its next run)")  # fmt: skip
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check("data dir", FAIL, f"{path} is not writable: {exc}",
                     f"make it writable: `chmod u+rwx {path}`")  # fmt: skip
    return Check("data dir", OK, f"{path} is yours, private (0700) and writable")


def _secret_files(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    for dirpath, _dirs, names in os.walk(root):
        here = Path(dirpath)
        for name in names:
            if name == "api-token" or "ca" in here.relative_to(root).parts:
                yield here / name


def check_secrets(root: Path) -> Check:
    loose: list[Path] = []
    count = 0
    for path in _secret_files(root):
        with contextlib.suppress(FileNotFoundError):
            st = path.lstat()
            count += 1
            if stat.S_IMODE(st.st_mode) & 0o077 or st.st_uid != os.geteuid():
                loose.append(path)
    if loose:
        shown = ", ".join(f"{p} ({stat.S_IMODE(p.lstat().st_mode):04o})" for p in loose[:5])
        return Check("secrets", FAIL, f"not private to you: {shown}",
                     f"`chmod 600 {' '.join(str(p) for p in loose)}` (as their owner)")  # fmt: skip
    if not count:
        return Check("secrets", OK, "no API token or CA yet (made 0600 on first use)")
    return Check("secrets", OK, f"{count} API token and CA files, all 0600")


def check_leftovers(client: Any) -> Check:
    from sandbox.cleanup import orphaned_sessions

    left = orphaned_sessions(client)
    if left:
        shown = ", ".join(left[:5]) + (" ..." if len(left) > 5 else "")
        return Check("leftovers", FAIL, f"{len(left)} interrupted runs left objects: {shown}",
                     "run `coderun gc`")  # fmt: skip
    return Check("leftovers", OK, "nothing left by interrupted runs")


def check_disk(path: Path) -> Check:
    where = _existing_parent(path)
    free = shutil.disk_usage(where).free
    if free < MIN_FREE_BYTES:
        return Check("disk", FAIL, f"{_gib(free)} free at {where}; session logs need "
                     f"{_gib(MIN_FREE_BYTES)}", "free some space, or set CODERUN_HOME "
                     "to a roomier file system")  # fmt: skip
    return Check("disk", OK, f"{_gib(free)} free at {where}")


# -- all of it ------------------------------------------------------------------------------


def run_checks(on_check: Callable[[Check], None] = lambda _c: None) -> list[Check]:
    """Every check, in order; ``on_check`` sees each as soon as it is done."""
    found: list[Check] = []

    def add(*checks: Check) -> None:
        for check in checks:
            found.append(check)
            on_check(check)

    client, engine = connect()
    add(engine)
    if client is None:
        add(*(Check(name, SKIPPED, "needs a Docker engine")
              for name in ("images", "mounts", "kernel", "leftovers")))  # fmt: skip
    else:
        tags, images_check = check_images(client)
        add(images_check)
        if images_check.ok:
            add(*probe_kernel(client, tags["gateway"]))
        else:
            add(*(Check(name, SKIPPED, "needs the gateway image") for name in ("mounts", "kernel")))
        add(check_leftovers(client))
    home = paths.data_dir_path()
    add(check_data_dir(home), check_secrets(home), check_disk(home))
    return found


def as_json(checks: list[Check]) -> str:
    return json.dumps(
        {"ok": all(c.ok for c in checks), "checks": [asdict(c) for c in checks]}, indent=2
    )

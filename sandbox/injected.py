"""Files coderun puts into a sandbox (the script, the CA bundle) without a host path.

A bind mount of a host file shows that file's host path in the sandbox's
``/proc/self/mountinfo`` (the data dir, the session folder, the user's home). Instead,
each session has a small tmpfs volume (Docker's ``local`` driver, ``type=tmpfs``) that
the trusted holder container mounts and so keeps mounted for the session. The files are
copied into it through the holder (``put_archive``, done by the engine) and bound into
the sandbox, read-only, from the volume's mount point: the sandbox's mount table shows a
tmpfs and the file's name in it, nothing of the host. The sandbox's root is read-only,
so the files cannot be copied into the sandbox container itself.
"""

from __future__ import annotations

import io
import tarfile

import docker
from docker.models.containers import Container
from docker.models.volumes import Volume

VOLUME_SIZE = "64m"  # scripts and CA bundles; tmpfs pages are used only as filled
HOLDER_PATH = "/coderun-files"  # where the holder mounts the volume


def create_volume(client: docker.DockerClient, name: str, labels: dict[str, str]) -> Volume:
    volume: Volume = client.volumes.create(
        name,
        driver="local",
        driver_opts={"type": "tmpfs", "device": "tmpfs", "o": f"size={VOLUME_SIZE},mode=0755"},
        labels=labels,
    )
    return volume


def holder_mount(volume: Volume) -> dict[str, dict[str, str]]:
    """The holder's ``volumes=`` entry for the session's files volume."""
    return {volume.name: {"bind": HOLDER_PATH, "mode": "rw"}}


def put_files(holder: Container, files: dict[str, tuple[bytes, int]]) -> None:
    """Copy ``name -> (data, mode)`` into the volume, owned by root (read-only to a
    non-root sandbox; bound read-only in any case)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    if not holder.put_archive(HOLDER_PATH, buf.getvalue()):
        raise RuntimeError("copying files into the sandbox's volume failed")


def binds(volume: Volume, targets: dict[str, str]) -> dict[str, dict[str, str]]:
    """``volumes=`` entries binding each file ``name -> container path``, read-only."""
    volume.reload()
    root = volume.attrs["Mountpoint"]
    return {f"{root}/{name}": {"bind": target, "mode": "ro"} for name, target in targets.items()}

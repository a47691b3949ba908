"""Runs *inside* the sandbox (stdlib only): what the sandbox may do to its own machine.

Prints one JSON object: ids, capabilities, cgroup limits (v1 or v2), the results of
writes to places that must refuse them (or be size-limited), and the mount table.
Usage: ``privprobe.py [FILL_MB]`` (how much to write into /tmp to find its limit).
"""

from __future__ import annotations

import errno
import json
import os
import sys


def read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def status_field(name: str) -> str:
    for line in (read("/proc/self/status") or "").splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def first(*paths: str) -> str | None:
    for path in paths:
        value = read(path)
        if value is not None:
            return value
    return None


def cgroups() -> dict[str, str | None]:
    return {
        # v2: one file each; v1: one hierarchy per controller (cpu or cpu,cpuacct)
        "cpu_max": read("/sys/fs/cgroup/cpu.max"),
        "cfs_quota_us": first(
            "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us"
        ),  # fmt: skip
        "cfs_period_us": first(
            "/sys/fs/cgroup/cpu/cpu.cfs_period_us", "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us"
        ),  # fmt: skip
        "memory_max": read("/sys/fs/cgroup/memory.max"),
        "swap_max": read("/sys/fs/cgroup/memory.swap.max"),
        "mem_limit": read("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
        "memsw_limit": read("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"),
        "pids_max": first("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"),
    }


def try_write(path: str) -> str:
    """ "ok" or the errno's name."""
    try:
        with open(path, "a") as f:
            f.write("# written by the sandbox\n")
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))


def try_mkdir(path: str) -> str:
    try:
        os.mkdir(path)
        return "ok"
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))


def fill(folder: str, megabytes: int) -> dict[str, object]:
    """Write up to ``megabytes`` into ``folder``; how far it got and how it stopped."""
    written = 0
    chunk = b"x" * (1024 * 1024)
    path = os.path.join(folder, "fill")
    try:
        with open(path, "wb") as f:
            for _ in range(megabytes):
                f.write(chunk)
                f.flush()
                written += 1
            os.fsync(f.fileno())
        stop = "ok"
    except OSError as exc:
        stop = errno.errorcode.get(exc.errno or 0, str(exc))
    finally:
        if os.path.exists(path):
            os.unlink(path)
    return {"mb": written, "stop": stop}


def main() -> None:
    fill_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    home = os.environ.get("HOME", "/")
    st = os.statvfs("/tmp")
    out = {
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "gid": os.getgid(),
        "home": home,
        "cwd": os.getcwd(),
        "cap_eff": status_field("CapEff"),
        "cap_prm": status_field("CapPrm"),
        "cap_bnd": status_field("CapBnd"),
        "no_new_privs": status_field("NoNewPrivs"),
        "cgroups": cgroups(),
        "writes": {
            path: try_write(path)
            for path in (
                "/etc/hosts",
                "/etc/hostname",
                "/etc/resolv.conf",
                "/etc/passwd",
                "/coderun-test",
                "/usr/bin/coderun-test",
                "/var/coderun-test",
            )
        },  # fmt: skip
        "mkdir_root": try_mkdir("/coderun-dir"),
        "writable": {
            path: try_write(os.path.join(path, "coderun-test"))
            for path in (
                "/tmp",
                "/var/tmp",
                home,
                os.getcwd(),
                *filter(None, os.environ.get("PRIVPROBE_ALSO", "").split(":")),
            )
        },  # fmt: skip
        "tmp_size": st.f_blocks * st.f_frsize,
        "fill_tmp": fill("/tmp", fill_mb) if fill_mb else None,
        "mountinfo": read("/proc/self/mountinfo"),
        "script": os.path.abspath(__file__),
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()

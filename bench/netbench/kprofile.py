"""Where the machine's CPU goes during a workload: perf's system-wide samples by kernel path.

The rows that the routed hop bounds (bulk TCP, keep-alive HTTP, new flows to a decided
destination) are decided in the kernel: coderun's Python never sees those packets. A
py-spy profile of the gateway cannot show what costs there, so these are system-wide
``perf record -a -g`` samples (cpu-clock: this VM has no hardware counters), read with
``perf script``. A sample counts in a group when any frame of its stack is one of the
group's functions (inclusive, like py-spy's *total*), so groups overlap: *forwarding*
(``ip_forward``) is everything forwarding a packet through the gateway sets off (its
netfilter hooks, conntrack, the second veth pair and bridge, the far side's receive when
it runs in the same softirq); a *direct* path has none of it. Samples whose innermost
frame is the idle loop's halt are idle; the rest are busy. Figures are CPU milliseconds
per unit of work (per MB, per 1,000 requests or flows), so paths of different speeds
compare.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FREQ = 999  # samples/s per CPU
IDLE_LEAVES = {"pv_native_safe_halt", "default_idle", "native_safe_halt", "poll_idle",
               "acpi_idle_do_entry", "intel_idle"}  # fmt: skip
GROUPS: dict[str, tuple[str, ...]] = {
    "forwarding through the gateway (`ip_forward`)": ("ip_forward",),
    "netfilter hooks, all (`nf_hook_slow`)": ("nf_hook_slow",),
    "conntrack (`nf_conntrack_in`)": ("nf_conntrack_in",),
    "iptables rules (`ipt_do_table`)": ("ipt_do_table",),
    "NFQUEUE (`nfqnl_enqueue_packet`, `nfqnl_recv_verdict`)": (
        "nfqnl_enqueue_packet", "nfqnl_recv_verdict"),
    "NFLOG (`nfulnl_log_packet`)": ("nfulnl_log_packet",),
    "bridges (`br_handle_frame`)": ("br_handle_frame",),
    "veth pairs (`veth_xmit`)": ("veth_xmit",),
}  # fmt: skip


@dataclass
class KProfile:
    seconds: float = 0.0
    samples: int = 0
    idle: int = 0
    groups: Counter[str] = field(default_factory=Counter)
    by_pid: Counter[int] = field(default_factory=Counter)  # busy samples of user_pids
    error: str = ""

    @property
    def busy(self) -> int:
        return self.samples - self.idle

    def cpu_ms(self, samples: int) -> float:
        return samples / FREQ * 1000

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "samples": self.samples, "idle": self.idle,
                "groups": dict(self.groups), "error": self.error}  # fmt: skip


def perf() -> str | None:
    return shutil.which("perf")


def parse_script(text: str, user_pids: set[int] | None = None) -> KProfile:
    """``perf script -F comm,pid,sym`` output with call chains: one block per sample
    (a header line, then its frames innermost first, then a blank line)."""
    prof = KProfile()
    for block in text.split("\n\n"):
        lines = [x for x in block.splitlines() if x.strip()]
        if not lines:
            continue
        head = lines[0].split()
        pid = next((int(w) for w in head[1:3] if w.isdigit()), 0)
        frames = [x.split()[-1] if x.split() else "" for x in lines[1:]]
        frames = [f.split("+", 1)[0] for f in frames]
        prof.samples += 1
        if frames and frames[0] in IDLE_LEAVES:
            prof.idle += 1
            continue
        names = set(frames)
        for label, funcs in GROUPS.items():
            if names.intersection(funcs):
                prof.groups[label] += 1
        if user_pids is not None and pid in user_pids:
            prof.by_pid[pid] += 1
    return prof


def record(during: Callable[[], Any], user_pids: set[int] | None = None) -> tuple[KProfile, Any]:
    """Sample every CPU while ``during()`` runs; returns (profile, its result)."""
    exe = perf()
    if exe is None:
        return KProfile(error="perf is not installed"), during()
    with tempfile.TemporaryDirectory(prefix="coderun-bench-perf-") as tmp:
        data = Path(tmp) / "perf.data"
        proc = subprocess.Popen(
            [exe, "record", "-a", "-g", "-F", str(FREQ), "-o", str(data)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        result: dict[str, Any] = {}
        deadline = time.monotonic() + 10  # perf has opened its events once it wrote a header
        while not (data.exists() and data.stat().st_size) and proc.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        t0 = time.monotonic()
        try:
            result["value"] = during()
        finally:
            seconds = time.monotonic() - t0
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        if not data.exists():
            return KProfile(error=f"perf record failed: {err.strip()[-300:]}"), result.get("value")
        script = subprocess.run(
            [exe, "script", "-i", str(data), "-F", "comm,pid,ip,sym"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        prof = parse_script(script.stdout, user_pids)
        prof.seconds = seconds
        return prof, result.get("value")


def markdown(profiles: dict[str, tuple[KProfile, float]], unit: str, title: str) -> str:
    """A table: per path (columns), CPU ms per ``unit`` busy and in each group.
    ``profiles`` maps a path's name to (profile, units of work done while sampled)."""
    names = list(profiles)
    failed = [n for n in names if profiles[n][0].error]
    if failed:
        return f"{title}: not profiled ({profiles[failed[0]][0].error})."
    lines = [
        f"{title} — `perf record -a -g` at {FREQ} Hz per CPU while the workload ran; CPU "
        f"milliseconds per {unit} (a sample counts in every group with a frame on its stack).",
        "",
        "| CPU ms per " + unit + " | " + " | ".join(names) + " |",
        "| --- |" + " --- |" * len(names),
    ]

    def cell(name: str, samples: int) -> str:
        prof, units = profiles[name]
        return f"{prof.cpu_ms(samples) / max(units, 1e-9):.2f}"

    lines.append("| busy, all (both CPUs) | " + " | ".join(
        cell(n, profiles[n][0].busy) for n in names) + " |")  # fmt: skip
    for label in GROUPS:
        if any(profiles[n][0].groups[label] for n in names):
            lines.append(f"| {label} | " + " | ".join(
                cell(n, profiles[n][0].groups[label]) for n in names) + " |")  # fmt: skip
    if any(profiles[n][0].by_pid for n in names):
        lines.append("| the gateway's process (its Python and its system calls) | " + " | ".join(
            cell(n, sum(profiles[n][0].by_pid.values())) for n in names) + " |")  # fmt: skip
    return "\n".join(lines)

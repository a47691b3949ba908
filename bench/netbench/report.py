"""Turning bench_gateway's results into the table rows, the console and the docs section."""

from __future__ import annotations

import math
from typing import Any

from netbench import profile
from netbench.common import fmt, met, preamble, ratio, table

HEADER = ("figure", "direct/baseline", "coderun", "ratio", "target", "met?")
Row = tuple[str, str, str, str, str, str]


def _m(out: dict[str, Any], fig: str, path: str) -> dict[str, float]:
    return dict(out[fig][path]["median"])


def _sum(out: dict[str, Any], fig: str, path: str, key: str) -> int:
    return int(sum(r.get(key, 0) for r in out[fig][path]["runs"]))


def _x(r: float, digits: int = 2) -> str:
    return "–" if math.isnan(r) else f"{r:.{digits}f}×"


def _pct(x: float) -> str:
    return fmt(100 * x, "%", 0)


def _connect_rows(out: dict[str, Any]) -> list[Row]:
    d, g = _m(out, "connect", "direct"), _m(out, "connect", "gateway")
    rows: list[Row] = []
    for q, limit in (("p50", 250.0), ("p99", 1000.0)):
        added = g[f"{q}_us"] - d[f"{q}_us"]
        rows.append((
            f"connect() {q}, allowed by a rule (added = coderun − direct)",
            fmt(d[f"{q}_us"], "µs", 0), f"{fmt(g[f'{q}_us'], 'µs', 0)} (+{fmt(added, 'µs', 0)})",
            _x(ratio(g[f"{q}_us"], d[f"{q}_us"])), f"added < {limit:.0f} µs",
            met(added < limit),
        ))  # fmt: skip
    spread = {
        p: " ".join(fmt(r["p99_us"], "", 0) for r in out["connect"][p]["runs"])
        for p in out["connect"]
    }
    rows.append((
        "connect() p99 of each repetition, µs (the machine's noise)",
        f"direct: {spread['direct']}" + (f"; bare: {spread['bare']}" if "bare" in spread else ""),
        spread["gateway"], "–", "–", "–",
    ))  # fmt: skip
    if "bare" in out["connect"]:
        b = _m(out, "connect", "bare")
        rows.append((
            "connect() p50 / p99 — bare handler (baseline) vs coderun",
            f"{fmt(b['p50_us'], 'µs', 0)} / {fmt(b['p99_us'], 'µs', 0)}",
            f"{fmt(g['p50_us'], 'µs', 0)} / {fmt(g['p99_us'], 'µs', 0)}",
            f"{_x(ratio(g['p50_us'], b['p50_us']))} / {_x(ratio(g['p99_us'], b['p99_us']))}",
            "–", "–",
        ))  # fmt: skip
    return rows


def _flow_rows(out: dict[str, Any]) -> list[Row]:
    d, g = _m(out, "flows", "direct"), _m(out, "flows", "gateway")
    b = _m(out, "flows", "bare") if "bare" in out["flows"] else None
    rows: list[Row] = []
    if b is not None:
        r = ratio(g["flows_per_s"], b["flows_per_s"])
        rows.append((
            "new flows/s, one sequential client (baseline: bare accept-all handler)",
            fmt(b["flows_per_s"], "/s"), fmt(g["flows_per_s"], "/s"), _pct(r),
            "≥ 8,000/s and ≥ 80 %", met(g["flows_per_s"] >= 8000 and r >= 0.8),
        ))  # fmt: skip
    rows.append((
        "new flows/s, no gateway at all (direct; the client's own ceiling)",
        fmt(d["flows_per_s"], "/s"), fmt(g["flows_per_s"], "/s"),
        _pct(ratio(g["flows_per_s"], d["flows_per_s"])), "–", "–",
    ))  # fmt: skip
    flows = _sum(out, "flows", "gateway", "flows")
    lost = {p: _sum(out, "flows", p, "errors") + _sum(out, "flows", p, "late")
            for p in out["flows"]}  # fmt: skip
    rows.append((
        f"lost + late connects (of {flows:,} through coderun; late = connect > 200 ms)",
        str(lost.get("bare", "–")), str(lost["gateway"]), "–", "0", met(lost["gateway"] == 0),
    ))  # fmt: skip
    if b is not None:
        rows.append((
            "connections that got no verdict at all (SYN seen as ESTABLISHED: see below)",
            str(_sum(out, "flows", "bare", "missing_verdicts")),
            str(_sum(out, "flows", "gateway", "missing_verdicts")), "–", "0",
            met(_sum(out, "flows", "gateway", "missing_verdicts") == 0),
        ))  # fmt: skip
    if b is not None:
        bu, gu = b["gw_cpu_us_per_verdict"], g["gw_cpu_us_per_verdict"]
        rows.append((
            "gateway CPU per verdict, user + system (→ verdicts/s one core could give)",
            f"{fmt(b['gw_user_us_per_verdict'], '', 0)} + {fmt(b['gw_sys_us_per_verdict'], '', 0)}"
            f" = {fmt(bu, 'µs', 0)} (→ {fmt(1e6 / bu, '/s')})",
            f"{fmt(g['gw_user_us_per_verdict'], '', 0)} + {fmt(g['gw_sys_us_per_verdict'], '', 0)}"
            f" = {fmt(gu, 'µs', 0)} (→ {fmt(1e6 / gu, '/s')})",
            _x(ratio(gu, bu)), "–", "–",
        ))  # fmt: skip
        rows.append((
            "gateway process CPU during the rate run (share of one core)",
            _pct(b["gw_cpu_share"]), _pct(g["gw_cpu_share"]), "–", "–", "–",
        ))  # fmt: skip
    return rows


def _bulk_rows(out: dict[str, Any]) -> list[Row]:
    d, g = _m(out, "bulk", "direct"), _m(out, "bulk", "gateway")
    r = ratio(g["mb_per_s"], d["mb_per_s"])
    size = out["sizes"]["bulk"] / 1e6
    rows: list[Row] = [(
        f"bulk TCP, one connection, {size:,.0f} MB to port 5002 (no interception)",
        fmt(d["mb_per_s"], "MB/s", 0), fmt(g["mb_per_s"], "MB/s", 0), _pct(r), "≥ 90 %",
        met(r >= 0.9),
    )]  # fmt: skip
    if "bare" in out["bulk"]:
        b = _m(out, "bulk", "bare")
        rows.append((
            "bulk TCP through the same topology with the bare handler (direct vs bare)",
            fmt(d["mb_per_s"], "MB/s", 0), fmt(b["mb_per_s"], "MB/s", 0),
            _pct(ratio(b["mb_per_s"], d["mb_per_s"])), "–", "–",
        ))  # fmt: skip
    if "router" in out["bulk"]:
        p = _m(out, "bulk", "router")
        rows.append((
            "bulk TCP through the same topology, gateway a plain router (no rules, no queue)",
            fmt(d["mb_per_s"], "MB/s", 0), fmt(p["mb_per_s"], "MB/s", 0),
            _pct(ratio(p["mb_per_s"], d["mb_per_s"])), "–", "–",
        ))  # fmt: skip
        rows.append((
            "bulk TCP, coderun vs the plain router (what coderun's rules and handler cost)",
            fmt(p["mb_per_s"], "MB/s", 0), fmt(g["mb_per_s"], "MB/s", 0),
            _pct(ratio(g["mb_per_s"], p["mb_per_s"])), "–", "–",
        ))  # fmt: skip
    return rows


def _http_rows(out: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for mode, label in (("new", "a new connection each"), ("keep", "one keep-alive connection")):
        h = out["http"][mode]
        d, w, g = h["direct"]["median"], h["gateway+mitmproxy"]["median"], h["gateway"]["median"]
        rows.append((
            f"HTTP GETs/s, {label}, through mitmproxy (logged)",
            fmt(d["req_per_s"], "/s"), fmt(w["req_per_s"], "/s"),
            _pct(ratio(w["req_per_s"], d["req_per_s"])), "report", "–",
        ))  # fmt: skip
        rows.append((
            f"HTTP GETs/s, {label}, gateway without mitmproxy (web_ports=\"\")",
            fmt(d["req_per_s"], "/s"), fmt(g["req_per_s"], "/s"),
            _pct(ratio(g["req_per_s"], d["req_per_s"])), "–", "–",
        ))  # fmt: skip
        rows.append((
            f"gateway CPU per HTTP request, {label}: without / with mitmproxy",
            fmt(g.get("gw_cpu_us_per_request", float("nan")), "µs", 0),
            fmt(w.get("gw_cpu_us_per_request", float("nan")), "µs", 0),
            _x(ratio(w.get("gw_cpu_us_per_request", 0), g.get("gw_cpu_us_per_request", 0)), 1)
            if g.get("gw_cpu_us_per_request", 0) >= 20 else "–",
            "–", "–",
        ))  # fmt: skip
    return rows


def gateway_rows(out: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    if "connect" in out:
        rows += _connect_rows(out)
    if "flows" in out:
        rows += _flow_rows(out)
    if "bulk" in out:
        rows += _bulk_rows(out)
    if "http" in out:
        rows += _http_rows(out)
    idle = out.get("rss_idle_mb", {})
    if "gateway" in idle:
        load = _m(out, "flows", "gateway").get("gw_rss_max_mb") if "flows" in out else None
        rows.append((
            "gateway Python RSS: idle → max under the flow-rate load",
            fmt(idle["gateway"], "MB", 1), fmt(load, "MB", 1) if load else "–", "–",
            "reported", "–",
        ))  # fmt: skip
    if "gateway+mitmproxy" in idle:
        rows.append(("gateway Python RSS idle, with mitmproxy loaded", "–",
                     fmt(idle["gateway+mitmproxy"], "MB", 1), "–", "reported", "–"))  # fmt: skip
    return rows


BREAKDOWN_HEADER = ("per verdict, wall time (µs)", "bare handler", "coderun gateway")
STEPS = (
    ("read", "one wake-up's netlink read and the callbacks it ran, per verdict"),
    ("on_packet", "`FlowGate.on_packet`: all of one packet's handling"),
    ("verdict_syscall", "… `pkt.accept()`: the verdict (the kernel re-injects the SYN in it)"),
    ("parse_flow", "… `parse_flow`"),
    ("rules.verdict", "… `RuleBook.verdict` (query context, `Policy.decide`, hit count)"),
    ("log_flow", "… `FlowGate.log_flow` (after the verdict)"),
    ("bus.publish", "… … of which `EventBus.publish` (log writer `json.dumps`, API)"),
)


def breakdown_rows(data: dict[str, Any]) -> list[tuple[str, ...]]:
    def us(path: str, step: str) -> float:
        s = data.get(path, {}).get("steps", {}).get(step)
        return float(s["us_per_verdict"]) if s else float("nan")

    rows: list[tuple[str, ...]] = [
        (label, fmt(us("bare", step), "", 1), fmt(us("timed", step), "", 1))
        for step, label in STEPS
    ]
    rest = us("timed", "on_packet") - sum(
        us("timed", s) for s in ("verdict_syscall", "parse_flow", "rules.verdict", "log_flow")
    )
    rows.append(("… the rest (names, `Query`, judge/finish calls)", "–", fmt(rest, "", 1)))
    py = {p: us(p, "read") - us(p, "verdict_syscall") for p in ("bare", "timed")}
    rows.append(("Python work outside the verdict call (read − verdict)",
                 fmt(py["bare"], "", 1), fmt(py["timed"], "", 1)))  # fmt: skip
    rows.append(("new flows/s during this run (timers on)",
                 fmt(data["bare"]["run"]["flows_per_s"], "/s"),
                 fmt(data["timed"]["run"]["flows_per_s"], "/s")))  # fmt: skip
    return rows


def console(rows: list[Row] | list[tuple[str, ...]]) -> str:
    header = HEADER if rows and len(rows[0]) == len(HEADER) else BREAKDOWN_HEADER
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
             for row in [header, *rows]]  # fmt: skip
    return "\n".join(lines)


NOTES = """\
Reading the table:

- *One sequential client* means each flow's time is the client's own work plus the round
  trip through whatever is in the path; the direct row is that client's ceiling on this
  machine. A flow through a gateway costs one NFQUEUE round trip: the SYN waits in the
  kernel until the handler's verdict, and the verdict call (`pkt.accept()`) itself
  re-injects the SYN, whose forwarding (and much of the handshake's softirq work) then
  runs inside that call. The breakdown table separates that kernel part, the same for
  the bare handler and for coderun, from coderun's own Python work.
- *Lost* = a connect that failed or took > 3 s; *late* = one that took > 200 ms (a lost
  or dropped SYN is retried after 1 s). *No verdict at all* = connections that reached
  the server without a log line of their own. The client closes each connection with a
  RST, so it soon reuses a source port whose conntrack entry lingers; such a SYN used to
  be seen as ESTABLISHED and forwarded unjudged. Every TCP SYN from the sandbox is queued
  now, and the gateway tells a retransmitted SYN (same 5-tuple and sequence number: same
  verdict, no second line) from a new connection on a reused 5-tuple (judged and logged).
- CPU per verdict is the gateway process's user + system time over the verdicts it gave;
  the system part includes the kernel work of forwarding the SYN (see above), so the
  difference between the two columns is what coderun's own handling costs.
- HTTP through mitmproxy: *new connection* pays a NEW-flow verdict plus mitmproxy
  accepting, connecting upstream (connection strategy lazy), parsing, logging;
  keep-alive isolates the per-request cost of mitmproxy's HTTP/1 layer and addon hooks.

Where a target is missed, and why:

- **Flows/s ≥ 8,000** cannot be shown on this machine: the bare accept-everything
  handler itself gives about 5,000/s here (the verdict syscall carries the SYN's
  forwarding). The ratio is at the line, so read it with the per-repetition scatter
  (±8 % here): 75–82 % in the runs made while the changes below landed, 81 % and 85 %
  in the two runs once the last one was in, against 55–74 % before. The
  flow-rate profile shows where the rest goes: two thirds of the loop's busy time is the
  verdict call itself (the kernel forwarding the SYN, as for the bare handler); coderun's
  Python is most of the remaining third. The changes: the retransmit memory was rebuilt
  whole on every flow once it held 10,000 flows (at 4,000 flows/s it does: ~250 µs a
  verdict in-process; pruned in O(1) now); then, in-process per verdict in the gateway
  image (`FlowGate.on_packet` with logging) ~40 → under 20 µs: `FlowKey` a tuple
  (hashed in C), policy decisions cached per query until the next rule expiry, a
  destination's verdict kept in `FlowGate` while the rule book and the name table are
  unchanged and no rule or name involved has expired (tests/snitch/test_flowgate.py
  breaks each of those), flow log lines built without a `LogEntry` object and encoded
  by one reused C JSON encoder, no API event built when no dashboard streams,
  `gc.freeze()` after start-up. A clear margin would need the per-packet path (parse,
  verdict, log record) in a compiled extension.
- **Bulk TCP ≥ 90 %**: the *plain router* row is the gateway container with no rules and
  no queue at all (`bench/netbench/bare_handler.py --router`). Across today's runs it got
  75–83 % of direct, and coderun 93–101 % of
  the plain router (the bare handler the same): most of what bulk TCP loses is the
  routed hop itself (a second veth pair and bridge, routing, conntrack), not coderun's
  rules or handler, which an established flow never reaches.
  Winning it back needs the kernel's fast path: an nftables flowtable (software flow
  offload) in the gateway. This kernel has none: `nft add flowtable` fails with ENOENT
  (no `nf_flow_table`), tried in a network namespace on this host. With such a kernel,
  a `flow add @ft` rule for established sandbox flows would be the change.
- **HTTP through mitmproxy** (report, remove the main cost): the profiles below show
  mitmproxy's own per-event pipeline (a task per hook, the layer stack, every addon
  walked per hook) and the second TCP connection; coderun's addon hooks are a few
  percent. The one cost that could go was mitmproxy type-checking every proxy event
  while `__debug__` is on: the gateway image runs Python with `PYTHONOPTIMIZE` now
  (−19 % CPU per request on a keep-alive connection, +22 % requests/s). Beyond that:
  mitmproxy in worker processes of its own (`SO_REUSEPORT`, off the verdict loop), or a
  light HTTP/1 request logger on port 80 where no path rule and no interception is
  asked for."""


def gateway_markdown(out: dict[str, Any], rows: list[Row], info: dict[str, str]) -> str:
    s = out["sizes"]
    extra = [
        f"- client: {out.get('client', '?')}, in a container; server: `workload.py serve` "
        "(Python threads) in another; images coderun-sandbox-bash / coderun-gateway",
        "- sizes (each path in turn, repeated; medians shown): "
        f"{s['connect_reps']} x {s['connects']:,} connects; {s['reps']} x {s['flow_s']:.0f} s "
        "of flows; "
        f"{s['bulk'] / 1e6:,.0f} MB bulk x {s['bulk_reps']}; "
        f"{s['reps']} x ({s['http_new']:,} + {s['http_keep']:,}) GETs; "
        f"run took {out['seconds'] / 60:.1f} min",
    ]
    parts = [
        preamble(info, extra),
        "",
        "Paths, all between containers this benchmark starts: *direct* = client and server "
        "on one Docker bridge network; *coderun* = a real session (enforce mode, a policy "
        'file allowing the server, the server\'s network as egress; `web_ports=""` unless '
        "mitmproxy is named); *bare* = the same session topology and iptables rules with a "
        "bare accept-everything NFQUEUE handler (`bench/netbench/bare_handler.py`) in the "
        "gateway's place. CPU figures are the gateway process's user+system time "
        "(`/proc/PID/stat`) over the verdicts it gave (flows logged / handler count).",
        "",
        table(HEADER, rows),
        "",
        NOTES,
    ]
    titles = {
        "flows": "Profile of the gateway under the flow-rate load",
        "http_new": "Profile of the gateway under HTTP load (new connections)",
        "http_keep": "Profile of the gateway under HTTP load (keep-alive)",
    }
    if "breakdown" in out:
        parts += [
            "",
            "**Where a verdict's time goes.** One more rate run each on the bare handler "
            "(timers in `bare_handler.py`) and on a session whose gateway runs the unchanged "
            "snitch code with `perf_counter_ns` timers wrapped around its packet path "
            "(`bench/netbench/timed_gateway.py`), totals divided by the verdicts given:",
            "",
            table(BREAKDOWN_HEADER, breakdown_rows(out["breakdown"])),
        ]
    for key, title in titles.items():
        prof = out.get(f"_prof_{key}")
        if prof is not None:
            parts += ["", profile.markdown(prof, f"**{title}**")]
    return "\n".join(parts)

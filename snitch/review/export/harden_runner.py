"""A step-security/harden-runner step with ``egress-policy: block`` and
``allowed-endpoints`` (``host:port`` entries, ``*.domain:port`` wildcards allowed).

harden-runner only allows, and only ``host:port`` pairs: deny rules, ICMP, networks and
wide port ranges cannot be expressed. A rule for any port is listed as 443 and 80.
"""

from __future__ import annotations

import ipaddress

from snitch.core.model import Action, Proto, Rule
from snitch.review.export.common import ExportOptions, ExportResult, Resolutions, header, prepare

MAX_RANGE = 16  # a port range up to this wide is listed port by port
ANY_PORTS = (443, 80)


def _host(rule: Rule) -> str | None:
    if rule.host is not None:
        return rule.host
    if rule.cidr is not None:
        net = ipaddress.ip_network(rule.cidr, strict=False)
        if net.prefixlen == net.max_prefixlen:
            addr = str(net.network_address)
            return f"[{addr}]" if net.version == 6 else addr
    return None


def endpoints(rules: list[Rule], warnings: list[str]) -> list[str]:
    """The ``host:port`` entries for the allow rules; problems are appended to warnings."""
    out: list[str] = []
    for rule in rules:
        what = rule.describe()
        if rule.action is Action.DENY:
            warnings.append(f"{what}: harden-runner only allows; block mode denies the rest")
            continue
        if rule.proto in (Proto.DNS, Proto.ICMP):
            warnings.append(f"{what}: harden-runner endpoints have no {rule.proto}; left out")
            continue
        host = _host(rule)
        if host is None:
            kind = "a network" if rule.cidr else "any destination"
            warnings.append(f"{what}: harden-runner cannot allow {kind}; left out")
            continue
        if not rule.port_lo:
            warnings.append(f"{what}: harden-runner needs a port; listed as 443 and 80")
            ports: list[int] = list(ANY_PORTS)
        elif rule.port_hi - rule.port_lo + 1 > MAX_RANGE:
            warnings.append(f"{what}: port range too wide to list; left out")
            continue
        else:
            ports = list(range(rule.port_lo, rule.port_hi + 1))
        if rule.proto is Proto.UDP:
            warnings.append(f"{what}: harden-runner endpoints do not say udp")
        for p in ports:
            entry = f"{host}:{p}"
            if entry not in out:
                out.append(entry)
    return out


def export_harden_runner(
    rules: list[Rule], resolutions: Resolutions, opts: ExportOptions
) -> ExportResult:
    del resolutions  # harden-runner resolves names itself
    prep = prepare(rules, opts.now)
    warnings = list(prep.warnings)
    found = endpoints(prep.rules, warnings)
    lines = [f"# {h}" for h in header("harden-runner", opts, len(prep.rules), addresses=False)]
    lines += [f"# warning: {w}" for w in warnings]
    lines += [
        "# Put this step first in each job:",
        "- name: Harden the runner (egress allowlist exported by coderun)",
        "  uses: step-security/harden-runner@v2",
        "  with:",
        "    egress-policy: block",
    ]
    if found:
        lines += ["    allowed-endpoints: >"] + [f"      {e}" for e in found]
    else:
        lines += ['    allowed-endpoints: ""']
    return ExportResult(text="\n".join(lines) + "\n", warnings=warnings)

"""Rule sets out of coderun: firewall and policy formats, one module each.

``export(rules, resolutions, fmt)`` is pure: ``resolutions`` maps each name to the
addresses coderun's logs saw for it (see ``snitch.review.logquery.resolutions``), which the
address-only formats use in place of names.
"""

from __future__ import annotations

from collections.abc import Callable

from snitch.core.model import Rule
from snitch.review.export.cilium import export_cilium
from snitch.review.export.common import ExportError, ExportOptions, ExportResult, Resolutions
from snitch.review.export.harden_runner import export_harden_runner
from snitch.review.export.iptables import export_iptables
from snitch.review.export.k8s import export_k8s
from snitch.review.export.lsrules import export_lsrules
from snitch.review.export.nftables import export_nftables
from snitch.review.export.opensnitch import export_opensnitch

Exporter = Callable[[list[Rule], Resolutions, ExportOptions], ExportResult]

FORMATS: dict[str, Exporter] = {
    "nftables": export_nftables,
    "iptables": export_iptables,
    "lsrules": export_lsrules,
    "opensnitch": export_opensnitch,
    "cilium": export_cilium,
    "k8s": export_k8s,
    "harden-runner": export_harden_runner,
}

# Formats whose output is addresses only: names need the addresses seen in the logs.
ADDRESS_FORMATS = frozenset({"nftables", "iptables", "k8s"})


def export(
    rules: list[Rule],
    resolutions: Resolutions,
    fmt: str,
    options: ExportOptions | None = None,
) -> ExportResult:
    """``rules`` written in format ``fmt``; ExportError for an unknown format."""
    try:
        exporter = FORMATS[fmt]
    except KeyError:
        raise ExportError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})") from None
    return exporter(list(rules), resolutions, options or ExportOptions())


__all__ = [
    "ADDRESS_FORMATS",
    "FORMATS",
    "ExportError",
    "ExportOptions",
    "ExportResult",
    "export",
]

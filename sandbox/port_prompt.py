"""The line prompt's question about a new listening port: forward it to 127.0.0.1?"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from snitch.core.safetext import safe
from snitch.review.client import ApiError, GatewayClient


class Asking(Protocol):
    """The line prompt's question machinery (sandbox/line_prompt.py)."""

    _withdrawn: asyncio.Future[str] | None

    def _say(self, text: str, *, question: bool = False) -> None: ...

    async def _answer(self) -> str | None: ...

    def _hold(self) -> None: ...

    def _release(self) -> None: ...


def new_ports(state: dict[str, Any], seen: set[str]) -> list[dict[str, Any]]:
    """The TCP ports of a ``ports`` event not asked about yet (and not forwarded);
    UDP ones are only told."""
    out = []
    forwarded = {int(f.get("port", 0)) for f in state.get("forwards", [])}
    for item in state.get("listening", []):
        key = f"{item.get('proto')}/{item.get('port')}"
        if key in seen:
            continue
        seen.add(key)
        if item.get("proto") == "tcp" and int(item.get("port", 0)) not in forwarded:
            out.append(item)
    return out


def loopback_only(item: dict[str, Any]) -> bool:
    """Bound to the sandbox's loopback: a forward (which arrives at the sandbox's
    address) cannot reach it; the program has to listen on 0.0.0.0."""
    return str(item.get("addr", "")).startswith("127.")


async def ask_port(prompt: Asking, client: GatewayClient, item: dict[str, Any]) -> bool:
    """Ask whether to forward ``item``'s port; False at the end of input. (It drives
    the prompt's question machinery: the sandbox's output is held while it is open.)"""
    port = int(item["port"])
    bound = safe(item.get("addr", ""))
    if item.get("process"):
        bound += f", {safe(item['process'])}"
    if loopback_only(item):
        prompt._say(f"the sandbox listens on {port}/tcp on its loopback ({bound}) only: a "
                    "forward cannot reach it (the program would have to listen on 0.0.0.0)")
        return True
    prompt._withdrawn = asyncio.get_running_loop().create_future()
    prompt._hold()
    try:
        while True:
            question = (f"the sandbox listens on {port}/tcp (bound to {bound}): forward "
                        f"127.0.0.1:{port} to it? [f]orward / [i]gnore: ")  # fmt: skip
            prompt._say(question, question=True)
            line = await prompt._answer()
            if line is None:
                return False
            if type(line) is not str:  # withdrawn (a port question never is)
                return True
            answer = line.strip()
            if answer == "i":
                prompt._say(f"not forwarded: {port}/tcp (the dashboard's Ports tab can)")
                return True
            if answer == "f":
                try:
                    fwd = await client.forward(port, port)
                except (ApiError, OSError) as exc:
                    prompt._say(f"the forward of {port} failed: {safe(exc)}")
                    return True
                host_port = safe(fwd.get("host_port"))
                prompt._say(f"forwarded: 127.0.0.1:{host_port} -> the sandbox's {port}/tcp "
                            "(connections are logged as inbound)")  # fmt: skip
                return True
            prompt._say("answer f or i (then Enter)")
    finally:
        prompt._release()

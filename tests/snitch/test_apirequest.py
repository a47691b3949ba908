"""snitch/core/apirequest.py: the request reader both API servers share."""

from __future__ import annotations

import asyncio

import pytest

from snitch.core.apirequest import Refused, Request, read_request

pytestmark = pytest.mark.asyncio
TOKEN = b"t0ken"


async def read(raw: bytes, max_body: int = 100) -> Request:
    reader = asyncio.StreamReader()
    reader.feed_data(raw)
    reader.feed_eof()
    return await read_request(reader, TOKEN, max_body, timeout=5)


def head(first: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [first, *headers, f"Content-Length: {len(body)}"] if body else [first, *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def test_a_request_with_its_token_is_read_whole() -> None:
    got = await read(head("POST /v1/rules?x=1&x=2 HTTP/1.1", "Authorization: Bearer t0ken",
                          "Connection: close", body=b'{"a": 1}'))  # fmt: skip
    assert got == Request("POST", "/rules", {"x": ["1", "2"]}, {"a": 1}, close=True)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (head("GET /v1/info HTTP/1.1"), 401),
        (head("GET /v1/info HTTP/1.1", "Authorization: Bearer nope"), 401),
        (head("GET /v2/info HTTP/1.1", "Authorization: Bearer t0ken"), 404),
        (head("POST /v1/x HTTP/1.1", "Authorization: Bearer t0ken", body=b"{nope"), 400),
        (head("POST /v1/x HTTP/1.1", "Authorization: Bearer t0ken", body=b"x" * 101), 413),
        (head("POST /v1/x HTTP/1.1", "Authorization: Bearer t0ken", "Content-Length: -1"), 413),
    ],
)
async def test_what_is_refused_and_with_which_status(raw: bytes, status: int) -> None:
    with pytest.raises(Refused) as refused:
        await read(raw)
    assert refused.value.status == status


async def test_a_client_gone_mid_head_is_no_request() -> None:
    with pytest.raises(asyncio.IncompleteReadError):
        await read(b"GET /v1/info HTTP/1.1\r\nAuthor")

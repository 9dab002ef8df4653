"""What every request passes before any route runs: the API key, then the size of its body.

Both are plain ASGI middleware, outside FastAPI's routing: a request without a valid key is answered 401 before its
body is read or the index is touched, and a body over the limit is cut off as it arrives (``Content-Length`` over
the limit is refused before a byte is read; a chunked body when it passes the limit), never buffered whole.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from rag.api.errors import error_body
from rag.errors import RagError

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
ASGIApp = Callable[[Scope, Receive, Send], Any]

# Readable without a key: the API's description (it names no document) and its rendered page.
PUBLIC_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect"})
UPLOAD_PATH = "/v1/documents"


async def send_json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    import json

    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


class KeyGuard:
    """``Authorization: Bearer KEY`` with one of ``keys`` on every path but the public ones; no keys: open (the
    server then listens on loopback only, ``rag.api.__main__``)."""

    def __init__(self, app: ASGIApp, keys: list[str]) -> None:
        self.app = app
        self.keys = [k.encode() for k in keys]

    def allowed(self, token: str | None) -> bool:
        if token is None:
            return False
        given = token.encode()
        matches = [hmac.compare_digest(given, key) for key in self.keys]  # every key compared: no timing hint
        return any(matches)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        if not self.allowed(token):
            message = ("missing API key: send 'Authorization: Bearer KEY'" if token is None
                       else "invalid API key")
            await send_json(send, 401, error_body(401, message, "invalid_api_key"),
                            {"WWW-Authenticate": "Bearer"})
            return
        await self.app(scope, receive, send)


class _TooLarge(RagError):
    pass


class BodyLimit:
    """Refuse bodies over ``upload_bytes`` (an upload: ``POST /v1/documents``) or ``other_bytes`` (anything else)
    with 413."""

    def __init__(self, app: ASGIApp, *, upload_bytes: int, other_bytes: int) -> None:
        self.app = app
        self.upload_bytes = upload_bytes
        self.other_bytes = other_bytes

    def limit(self, scope: Scope) -> int:
        return self.upload_bytes if scope["path"].rstrip("/") == UPLOAD_PATH else self.other_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope)
        refusal = error_body(413, f"the request body is over the limit of {_size(limit)}", "request_too_large")
        declared = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await send_json(send, 413, refusal)
            return
        seen = 0
        over = False
        started = False

        async def counted() -> Message:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:  # whatever the app made of a body cut short, the answer is 413
                if not started:
                    started = True
                    await send_json(send, 413, refusal)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, guarded_send)
        except _TooLarge:
            if not started:
                await send_json(send, 413, refusal)


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MB" if n >= 1024 * 1024 else f"{n // 1024} KB"

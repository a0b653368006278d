"""What every response carries, and which requests are answered at all.

- Content-Security-Policy: scripts, styles and images from this server only;
  no inline script, no frames, no plugins, no <base>. A recorded string that
  somehow reached the page as markup still could not run.
- The Host header must be one the server was bound as (DNS rebinding: a page
  on another site that resolves its name to 127.0.0.1 gets 421, not data).
"""

from __future__ import annotations

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def allowed_hosts_for(host: str, port: int) -> list[str] | None:
    """The Host headers a server bound to host:port answers; None (any) for 0.0.0.0/::."""
    if host in ("0.0.0.0", "::"):
        return None
    names = {host, f"{host}:{port}"}
    if host in ("127.0.0.1", "localhost", "::1"):
        names |= {f"{n}:{port}" for n in ("127.0.0.1", "localhost", "[::1]")}
        names |= {"127.0.0.1", "localhost"}
    return sorted(names)


class Guard:
    """ASGI middleware: refuse foreign Host headers, add the security headers."""

    def __init__(self, app, allowed_hosts: list[str] | None):
        self.app = app
        self.allowed = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.allowed is not None:
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
            if host not in self.allowed:
                await _refuse(send)
                return

        async def with_headers(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


async def _refuse(send) -> None:
    body = b"This server answers only the host it was started on.\n"
    await send({"type": "http.response.start", "status": 421,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), *HEADERS]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})

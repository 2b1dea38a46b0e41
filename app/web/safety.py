"""What keeps `systolab serve` safe by default.

- It binds to the loopback interface; any other address needs a token (`check_bind`).
- With a token, every request carries it (`Authorization: Bearer T`, header `X-Systolab-Token`,
  or `?token=T` once, which sets a cookie for the browser); without one, requests must name a
  loopback Host (no DNS rebinding) and a cross-site Origin may not change anything.
- Every path a request names is resolved (symlinks followed) and must stay inside the service's
  store, or inside the packaged `configs/` for the read-only templates (`Paths`).
- Request bodies are limited while they stream in (`BodyLimit`): uploads to `max_upload` bytes,
  everything else to `MAX_BODY`.
- Errors are `WebError`s (a `UserError` with an HTTP status) and become `{"error": one line}`.
"""

from __future__ import annotations

import hmac
import json
import re
from http.cookies import SimpleCookie
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from systolab.errors import UserError

__all__ = ["WebError", "LOCAL_HOSTS", "check_bind", "Paths", "TokenGuard", "BodyLimit", "MAX_BODY",
           "safe_name", "TOKEN_ENV"]

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
TOKEN_ENV = "SYSTOLAB_TOKEN"
#: largest request body other than an upload (a config or sweep file as JSON)
MAX_BODY = 4 << 20
_COOKIE = "systolab_token"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class WebError(UserError):
    """A bad request, answered with `status` and the one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def check_bind(host: str, token: str | None) -> None:
    if host not in LOCAL_HOSTS and not token:
        raise UserError(f"systolab serve: --host {host} would open the service to other machines; "
                        f"set a token with --token or {TOKEN_ENV} (or bind to 127.0.0.1)")


def safe_name(name: str, *, suffixes: tuple[str, ...] = ()) -> str:
    """A plain file name (letters, digits, '_', '.', '-'; no directories) with one of `suffixes`."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise WebError(400, f"{name!r} is not a file name: use letters, digits, '_', '.' and '-' "
                            f"(at most 100, no directories)")
    if suffixes and not name.endswith(suffixes):
        raise WebError(400, f"{name}: the name must end in {', '.join(suffixes)}")
    return name


class Paths:
    """The store (read-write) and the packaged templates (read-only, named `configs/...`)."""

    def __init__(self, store: Path):
        self.store = Path(store).resolve()
        self.templates = Path(str(resources.files("systolab.configs"))).resolve()

    def _check(self, text: str) -> Path:
        if not isinstance(text, str) or not text or "\x00" in text or len(text) > 1000:
            raise WebError(400, f"{text!r} is not a path")
        p = Path(text)
        if p.is_absolute() or text.startswith("~"):
            raise WebError(403, f"{text}: absolute paths are refused; name a path inside the store")
        return p

    def store_path(self, text: str, *, must_exist: bool = True) -> Path:
        """`text` (relative to the store) resolved; refused when it leads outside the store."""
        full = (self.store / self._check(text)).resolve()
        if not full.is_relative_to(self.store):
            raise WebError(403, f"{text}: outside the service's store")
        if must_exist and not full.exists():
            raise WebError(404, f"{text}: no such file in the store")
        return full

    def readable(self, text: str) -> Path:
        """A store path, or a template `configs/...` (packaged, read-only)."""
        p = self._check(text)
        if p.parts and p.parts[0] == "configs":
            full = (self.templates / Path(*p.parts[1:])).resolve() if len(p.parts) > 1 else self.templates
            if not full.is_relative_to(self.templates):
                raise WebError(403, f"{text}: outside the packaged configs")
            if not full.is_file():
                raise WebError(404, f"{text}: no such template")
            return full
        return self.store_path(text)

    def display(self, full: Path) -> str:
        """How a resolved path is named to a client: `configs/...` or relative to the store."""
        full = Path(full).resolve()
        if full.is_relative_to(self.templates):
            return str(Path("configs") / full.relative_to(self.templates))
        return str(full.relative_to(self.store))

    def inside(self, full: Path) -> bool:
        full = Path(full).resolve()
        return full.is_relative_to(self.store) or full.is_relative_to(self.templates)


async def _send_json(send, status: int, body: dict, headers=()) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode()), *headers]})
    await send({"type": "http.response.body", "body": data})


class TokenGuard:
    """ASGI middleware: the token (when set), the Host of a loopback-only service, and Origin."""

    def __init__(self, app, *, token: str | None, allowed_hosts=LOCAL_HOSTS):
        self.app, self.token = app, token or None
        self.allowed_hosts = tuple(allowed_hosts)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = _hostname(headers.get("host", ""))
        if self.token is None and host not in self.allowed_hosts:
            return await _send_json(send, 403, {"error": f"Host {host!r} refused: this service "
                                                         f"answers only on the loopback address"})
        origin = headers.get("origin")
        if origin and scope["method"] not in ("GET", "HEAD") and _hostname(urlsplit(origin).netloc) != host:
            return await _send_json(send, 403, {"error": f"cross-site request from {origin} refused"})
        if self.token is None:
            return await self.app(scope, receive, send)
        given, from_query = _token_of(scope, headers)
        if given is None:
            return await _send_json(send, 401, {"error": "this service needs a token: send "
                                                         "'Authorization: Bearer TOKEN' or open a page "
                                                         "with ?token=TOKEN"},
                                    [(b"www-authenticate", b"Bearer")])
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return await _send_json(send, 403, {"error": "wrong token"})
        if not from_query:
            return await self.app(scope, receive, send)

        async def send_with_cookie(message):
            if message["type"] == "http.response.start":
                cookie = f"{_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
            await send(message)
        return await self.app(scope, receive, send_with_cookie)


def _hostname(netloc: str) -> str:
    netloc = netloc.strip().lower()
    if netloc.startswith("["):                       # [::1]:8000
        return netloc[1:netloc.find("]")] if "]" in netloc else netloc
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def _token_of(scope, headers) -> tuple[str | None, bool]:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip(), False
    if "x-systolab-token" in headers:
        return headers["x-systolab-token"], False
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if "token" in query:
        return query["token"][0], True
    if "cookie" in headers:
        c = SimpleCookie()
        try:
            c.load(headers["cookie"])
        except Exception:  # noqa: BLE001 - a malformed cookie header is no token
            return None, False
        if _COOKIE in c:
            return c[_COOKIE].value, False
    return None, False


class BodyLimit:
    """ASGI middleware: a body longer than its limit is refused with 413 as it streams in (or at
    once, from Content-Length), never read to the end."""

    def __init__(self, app, *, max_upload: int, upload_prefix: str = "/api/uploads/"):
        self.app, self.max_upload, self.prefix = app, max_upload, upload_prefix

    def _limit(self, scope) -> int:
        return self.max_upload if scope["path"].startswith(self.prefix) else MAX_BODY

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self._limit(scope)
        what = "upload" if limit == self.max_upload else "request body"
        message = f"{what} larger than the limit of {limit:,} bytes"
        for k, v in scope["headers"]:
            if k.lower() == b"content-length" and v.isdigit() and int(v) > limit:
                return await _send_json(send, 413, {"error": message})
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise WebError(413, message)
            return msg

        async def tracking_send(msg):
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except WebError as e:
            if started or e.status != 413:
                raise
            await _send_json(send, 413, {"error": str(e)})

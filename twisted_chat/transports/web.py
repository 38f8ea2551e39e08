"""
The web front-end (``--web``): a twisted.web ``Site`` serving the chat page
and the WebSocket at ``/ws`` (issue 16; the dialect is ``docs/web.md``).

Served: ``GET /`` (``index.html``) and the other files of
``web_static/``, read once at start-up (package data, so a page is what
was installed, never what is on disk now); ``/ws``, the upgrade to a
:class:`~twisted_chat.transports.web_session.WebSession`; nothing else
(404).  Every response carries :data:`SECURITY_HEADERS`: the page runs
only its own script and style, loads nothing from elsewhere and cannot be
framed.  A WebSocket upgrade from a page of another origin is refused with
403 before it happens (``--web-origin``; by default only the page's own
origin, the request's ``Host`` with the listener's scheme): the browser
sends the cookies-free ``Origin`` header on every WebSocket, and this is
what keeps another site's script from chatting as its visitor.

Each of the Site's connections is wrapped
(:class:`~twisted_chat.transports.web_connection.WebConnection`): the
caps on connections that are still plain HTTP, each of which is closed
after :data:`HTTP_TIMEOUT` seconds of silence, and once upgraded the
reading of the WebSocket's frames, with the bound on a message's size
that Twisted's WebSocket lacks, and the flood hold.  Request bodies are
refused (413): only GET is served, and Twisted spools a big body to disk.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Any, Final

from twisted.protocols.policies import WrappingFactory
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from twisted.web.websocket import WebSocketResource
from zope.interface import implementer

from twisted_chat.core.logs import RateLimitedLogger
from twisted_chat.transports.listener import IChatListener
from twisted_chat.transports.web_connection import WebConnection

if TYPE_CHECKING:
    from twisted_chat.transports.web_session import WebSessionFactory

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from twisted_chat.core.settings import Settings

__all__ = [
    "HTTP_TIMEOUT",
    "SECURITY_HEADERS",
    "WebClients",
    "WebFactory",
    "allowed_origin",
    "read_static",
]

_log = RateLimitedLogger()

#: Seconds an HTTP connection that has not upgraded may stay silent.
HTTP_TIMEOUT: Final = 30.0
#: What every response carries.
SECURITY_HEADERS: Final = (
    (
        b"Content-Security-Policy",
        (
            b"default-src 'none'; script-src 'self'; style-src 'self'; "
            b"img-src 'self'; connect-src 'self'; base-uri 'none'; "
            b"form-action 'none'; frame-ancestors 'none'"
        ),
    ),
    (b"X-Content-Type-Options", b"nosniff"),
    (b"Referrer-Policy", b"no-referrer"),
    (b"Cache-Control", b"no-cache"),
)
#: A request body we take at all (we serve GET only).
MAX_BODY: Final = 4096

_TYPES: Final = {
    "html": b"text/html; charset=utf-8",
    "js": b"text/javascript; charset=utf-8",
    "css": b"text/css; charset=utf-8",
    "svg": b"image/svg+xml",
    "png": b"image/png",
    "ico": b"image/x-icon",
    "json": b"application/json",
    "txt": b"text/plain; charset=utf-8",
}


def read_static(
    package: str = "twisted_chat.transports",
) -> dict[bytes, tuple[bytes, bytes]]:
    """The page's files by request path: ``{b"/chat.js": (type, body)}``."""
    files: dict[bytes, tuple[bytes, bytes]] = {}
    folder = resources.files(package) / "web_static"
    if not folder.is_dir():
        return files
    for entry in folder.iterdir():
        name = entry.name
        if not entry.is_file() or name.startswith("."):
            continue
        kind = _TYPES.get(name.rpartition(".")[2].lower(), b"application/octet-stream")
        body = entry.read_bytes()
        files[b"/" + name.encode("utf-8")] = (kind, body)
        if name == "index.html":
            files[b"/"] = (kind, body)
    return files


def allowed_origin(origin: str, request: Request, allowed: tuple[str, ...]) -> bool:
    """Whether a WebSocket from a page of ``origin`` may chat."""
    origin = origin.strip().lower().rstrip("/")
    if allowed:
        return origin in allowed
    host = (request.getHeader("host") or "").strip().lower()
    scheme = "https" if request.isSecure() else "http"
    return bool(host) and origin == f"{scheme}://{host}"


class WebRequest(Request):
    """A request whose every response carries the security headers."""

    def gotLength(self, length: int | None) -> None:
        if (length is not None and length > MAX_BODY) or (
            length is None and self.requestHeaders.hasHeader(b"transfer-encoding")
        ):
            # Only GET is served: a body is never needed, and Twisted would
            # spool a big one to a temporary file.
            transport: Any = self.channel.transport
            transport.write(
                b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\n"
                b"Content-Length: 0\r\n\r\n"
            )
            transport.loseConnection()
            length = 0
        super().gotLength(length)

    def process(self) -> None:
        for name, value in SECURITY_HEADERS:
            self.responseHeaders.setRawHeaders(name, [value])
        super().process()


class _ChatSocket(WebSocketResource):
    """``/ws``: refuses other origins (403), then upgrades."""

    def __init__(self, factory: WebSessionFactory) -> None:
        super().__init__(factory)
        self.sessions = factory

    def render_GET(self, request: Request) -> bytes | int:
        origin = request.getHeader("origin")
        allowed = tuple(self.sessions.server.settings.web_origin)
        if origin is not None and not allowed_origin(origin, request, allowed):
            _log.info("refused WebSocket from origin {origin}", origin=origin[:100])
            request.setResponseCode(http.FORBIDDEN)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"This page's origin may not use this chat.\n"
        if not _is_upgrade(request):
            # Said here, quietly: Twisted logs every failed handshake as an
            # error, which anyone could fill the log with.
            request.setResponseCode(http.BAD_REQUEST)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"This is the chat's WebSocket; the page is at /.\n"
        return super().render_GET(request)


def _is_upgrade(request: Request) -> bool:
    """Whether ``request`` asks for a WebSocket as RFC 6455 (4.1) says."""
    header = request.getHeader

    def tokens(name: str) -> set[str]:
        return {word.strip().lower() for word in (header(name) or "").split(",")}

    return (
        "websocket" in tokens("upgrade")
        and "upgrade" in tokens("connection")
        and bool(header("sec-websocket-key"))
        and header("sec-websocket-version") == "13"
    )


class _Root(Resource):
    """Every path: a static file, the WebSocket, or 404."""

    isLeaf = True

    def __init__(
        self, files: dict[bytes, tuple[bytes, bytes]], socket: Resource
    ) -> None:
        super().__init__()
        self.files = files
        self.socket = socket

    def render(self, request: Request) -> bytes | int:
        path = request.path
        if path == b"/ws":
            result: bytes | int = self.socket.render(request)
            return result
        method = request.method
        found = self.files.get(path)
        if found is None:
            request.setResponseCode(http.NOT_FOUND)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"Not found.\n"
        if method not in (b"GET", b"HEAD"):
            request.setResponseCode(http.NOT_ALLOWED)
            request.setHeader(b"allow", b"GET, HEAD")
            return b""
        kind, body = found
        request.setHeader(b"content-type", kind)
        return body


class _ChatSite(Site):
    """The Site, without an access log line per request."""

    noisy = False
    requestFactory = WebRequest

    def log(self, request: Any) -> None:
        """No access log: the chat logs who connects, not every page load."""


class WebFactory(WrappingFactory):
    """The listening factory of ``--web``: the Site, its connections wrapped."""

    protocol = WebConnection
    noisy = False

    def __init__(
        self,
        sessions: WebSessionFactory,
        files: dict[bytes, tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.sessions = sessions
        files = read_static() if files is None else files
        site = _ChatSite(
            _Root(files, _ChatSocket(sessions)),
            parsePOSTFormSubmission=False,
            timeout=HTTP_TIMEOUT,
            reactor=sessions.reactor,
        )
        site.displayTracebacks = False
        super().__init__(site)
        self.site = site
        #: Plain HTTP connections (not upgraded) per address group, in all.
        self.http_open: dict[str, int] = {}
        self.http_total = 0

    def count_http(self, group: str) -> bool:
        """Count an HTTP connection in, or say it is one too many."""
        settings = self.sessions.server.settings
        count = self.http_open.get(group, 0)
        if settings.max_per_ip and group and count >= settings.max_per_ip:
            return False
        if settings.max_clients and self.http_total >= settings.max_clients:
            return False
        self.http_open[group] = count + 1
        self.http_total += 1
        return True

    def uncount_http(self, group: str) -> None:
        self.http_total -= 1
        count = self.http_open.get(group, 0) - 1
        if count > 0:
            self.http_open[group] = count
        else:
            self.http_open.pop(group, None)


@implementer(IChatListener)
class WebClients:
    """The web front-end's sessions, as the daemon shuts down and reloads them."""

    def __init__(self, factory: WebFactory) -> None:
        self.factory = factory
        self.sessions = factory.sessions

    def close_clients(self) -> None:
        for session in list(self.sessions.sessions):
            session.shutdown()
        # Page loads kept alive: they would only delay the exit.
        for connection in list(self.factory.protocols):
            if isinstance(connection, WebConnection) and connection.session is None:
                transport: Any = connection.transport
                transport.loseConnection()

    def abort_clients(self) -> None:
        for session in list(self.sessions.sessions):
            session.abort()

    def apply_settings(self, settings: Settings) -> None:
        for session in list(self.sessions.sessions):
            session.apply_settings(settings)

    def wait_until_empty(self) -> Deferred[None]:
        return self.sessions.wait_until_empty()

    def client_count(self) -> int:
        return len(self.sessions.sessions)

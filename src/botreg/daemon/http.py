"""The daemon's HTTP surface (loopback by default): Starlette served by uvicorn.

GET  /healthz                         alive
GET  /readyz                          first sync done, store reachable, last success fresh
GET  /status                          the status document (JSON)
GET  /metrics                         Prometheus text
POST /hooks/git                       push webhooks: verified, then trigger a fetch
GET  /knowledge/{domain}/query?q=&k=  ranked chunks (so `botreg query` works while the
                                      daemon holds the embedded store)
GET  /bots, /bots/{bot_id}            the seed's HTTP registry contract:
                                      {"bot_id", "config", "status"}, resolved and masked
POST /bots, PUT/DELETE /bots/{bot_id} writes, as commits pushed to the source (off
                                      unless --allow-writes; see botreg.daemon.write_api)
GET  /knowledge/{domain}              a domain's ingestion status

With an API token (--api-token-file) every endpoint but /healthz, /readyz and the
signed /hooks/git needs `Authorization: Bearer <token>` (the scheme in any case); a
token file that becomes empty or unreadable closes them (503), never opens them.

The server is a `uvicorn.Server` on one event loop in a background thread of the
daemon's process. Its costs are bounded whatever the clients do:

- connections: at most `max_connections`, then `probe_slots` more that serve only
  `/healthz` and `/readyz` (anything else 503 and close); beyond those, clients
  wait in the listen queue (the server's own accept loop stops accepting, so a
  burst is never accepted only to be reset); the soft descriptor limit is raised
  to the hard one and the bounds fit what it leaves;
- threads: the handlers that block (status, store, registry) run on a pool of at
  most `max_threads` workers; idle and slow connections cost no thread;
- time: request headers must arrive within `header_timeout` of the first byte
  (slowloris), a body on any route within `body_timeout` of its headers, an idle
  keep-alive connection is closed after `keep_alive` seconds;
- memory: a hook body is capped at `max_body` while it streams, whatever
  Content-Length says, a write's at `write_api.WRITE_MAX_BODY`; other routes take
  no body (413 at once); a malformed request is a JSON 400 and a close.

Every answer is masked (`mask_text`, `mask_config`) and strict JSON, whatever
handler built it, errors included (401, 404, 405 with Allow, 413, 415, 500...); a
handler that fails answers 500 with the exception's type, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import hmac
import json
import logging
import os
import re
import resource
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import anyio
import h11
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from botreg.daemon.hooks import verify_push
from botreg.daemon.metrics import CONTENT_TYPE, Metrics
from botreg.daemon.write_api import Reply, WriteAPI, writes_off
from botreg.secrets import dumps_strict, mask_config, mask_text

__all__ = ["MAX_BODY", "DaemonHTTP", "read_token_file"]

logger = logging.getLogger("botreg.http")
MAX_BODY = 5 * 1024 * 1024
AT_WAIT = 5.0  # seconds `?at=COMMIT` waits for this daemon to apply or follow COMMIT
AT_MAX_WAITERS = 64  # `?at=` requests waiting at once; beyond, 409 + Retry-After at once
_COMMIT = re.compile(r"[0-9a-f]{4,40}")
_OPEN = ("/healthz", "/readyz", "/hooks/git")  # no bearer token: probes and signed hooks
_SIGNATURES = ("x-hub-signature-256", "x-gitea-signature", "x-gogs-signature", "x-gitlab-token")
_FD_RESERVE = 256  # descriptors kept for the store, git and the logs beyond the connections
_NO_BODY_MAX = 4096  # bytes of body a route other than the hook accepts (they read none)
_WRITES = {("POST", "/bots"), ("PUT", "/bots/{bot_id}")}  # (method, route) that read a body
_PROBES = ("/healthz", "/readyz")  # answered even at the connection limit
_ACCEPT_BATCH = 64  # connections accepted per wake-up of the listening socket
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_WARN_EVERY = 60.0  # seconds between two warnings of the same trouble


_tokens: dict[str, tuple[tuple[int, int, int], bytes]] = {}
_tokens_lock = threading.Lock()


def read_token_file(path: os.PathLike[str] | str) -> bytes:
    """The token in `path`, stripped; b"" when the file is empty or unreadable.

    Re-read only when the file changes (its inode, size or mtime_ns: a rename over
    it or a rewrite), so a rotated token applies at the next request without a
    restart and without reading the file at every request. b"" fails closed: the
    API answers 503 until the file holds a token again.

    Args:
        path: the --api-token-file.

    Returns:
        The token's bytes, or b"".
    """
    name = os.fspath(path)
    try:
        info = os.stat(name)
    except OSError:
        return b""
    key = (info.st_ino, info.st_size, info.st_mtime_ns)
    with _tokens_lock:
        cached = _tokens.get(name)
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        with open(name, "rb") as handle:
            token = handle.read(64 * 1024).strip()  # a token, not a file to slurp
    except OSError:
        return b""
    if is_blank(token):  # NBSP, ideographic space...: bytes.strip() sees only ASCII
        token = b""
    with _tokens_lock:
        _tokens[name] = (key, token)
    return token


def is_blank(token: bytes) -> bool:
    """Whether a token file's content is empty or only whitespace, Unicode included.

    Args:
        token: the file's bytes.

    Returns:
        True when nothing but whitespace (ASCII or Unicode, e.g. U+00A0, U+3000) is left.
    """
    return not token.decode("utf-8", errors="replace").strip()


def _path_of(target: str) -> str:
    """The path a request is routed by: an absolute-form target (`http://host/x`,
    RFC 7230 5.3.2: servers must accept it) is routed by its path; no trailing slash."""
    if not target.startswith("/") and target[:8].lower().startswith(("http://", "https://")):
        target = urlsplit(target).path
    return target.rstrip("/") or "/"


def _is_probe(request_line: bytes | bytearray) -> bool:
    """Whether a request line asks for /healthz or /readyz (GET or HEAD, any target form)."""
    parts = request_line.strip().split(b" ")
    if len(parts) != 3 or parts[0] not in (b"GET", b"HEAD"):
        return False
    target = parts[1].decode("latin-1").partition("?")[0]
    return _path_of(target) in _PROBES


def _render(body: str | bytes | dict[str, Any] | list[Any]) -> bytes:
    """Masked, strict text of an answer: the one place every response body passes.

    Bytes are JSON the read model already masked and rendered once per bot blob
    (`ResolvedBots.bots_json`): masking 1,000 bots at every request cost ~1 s.
    """
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return mask_text(body).encode()
    return dumps_strict(mask_config(body), indent=2).encode()


def _answer(
    code: int,
    body: str | bytes | dict[str, Any] | list[Any],
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(_render(body), status_code=code, media_type=content_type, headers=headers)


def _raw_answer(code: int, reason: str, message: str) -> bytes:
    """A complete HTTP/1.1 answer that closes the connection, for the protocol layer
    (before or outside a request cycle, where no ASGI response can be sent)."""
    body = _render({"error": message})
    head = (
        f"HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class _Settings:
    """What the protocol layer needs from its DaemonHTTP (shared by every connection)."""

    def __init__(
        self,
        max_connections: int,
        header_timeout: float,
        body_timeout: float,
        reject: Callable[[str], None],
    ) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.probe_timeout = min(2.0, header_timeout)  # a probe's request line, at the limit
        self.body_timeout = body_timeout
        self.reject = reject
        self.released: Callable[[], None] = lambda: None  # a connection closed


class _Config(uvicorn.Config):
    settings: _Settings


class _Protocol(H11Protocol):
    """uvicorn's h11 protocol with what it lacks for a long-running service.

    uvicorn arms no timer before the first request of a connection, nor while the
    headers of a later one trickle in: a client sending one byte a second held the
    connection forever. Here the headers must be complete within `header_timeout`
    of the connection (or of the first byte of a later request), else 408 and close;
    and a body, on any route, must be complete within `body_timeout` of its headers
    (uvicorn re-arms keep-alive at every byte: `GET /healthz` with a body trickled at
    1 byte/s stayed open forever), else 408 (or a close, once answered).

    Beyond `max_connections` a connection is probe-only: its request line must come
    within `probe_timeout`; `/healthz` and `/readyz` are served (a liveness probe must
    not fail under a slowloris), anything else is answered 503 and closed. It answers
    a client that half-closes in the middle of a request with 400 instead of silence,
    and its own malformed-request 400s in the daemon's JSON shape.
    """

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._settings = cast(_Config, config).settings
        self._deadline: asyncio.TimerHandle | None = None
        self._body_deadline: asyncio.TimerHandle | None = None
        self._held: bytearray | None = None  # probe-only: the request line, held back
        self._probe = False  # accepted beyond max_connections: one probe answer at most

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._settings.max_connections:
            self._probe = True
            self._held = bytearray()
            self._arm(self._settings.probe_timeout)
            return
        self._arm(self._settings.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self._held is not None:  # over the limit: a probe, or 503
            self._held += data
            line, found, _ = self._held.partition(b"\n")
            if not found and len(self._held) < 8192:
                return
            if not found or not _is_probe(line):
                self._refuse(503, "Service Unavailable", "too many connections", "connections")
                return
            data, self._held = bytes(self._held), None
        super().data_received(data)
        if self.transport.is_closing():
            self._disarm()
            self._disarm_body()
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            if self._deadline is None:  # a request has begun: its headers have a deadline
                self._arm(self._settings.header_timeout)
            self._disarm_body()
        else:
            self._disarm()  # headers complete: the body has its own deadline
            if state is h11.SEND_BODY:
                if self._body_deadline is None:
                    self._body_deadline = self.loop.call_later(
                        self._settings.body_timeout, self._body_expired
                    )
            else:
                self._disarm_body()

    def eof_received(self) -> bool | None:  # type: ignore[override]
        state = self.conn.their_state
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and state is h11.DONE:
            # a complete request, then a half-close: answer it, then close
            cycle.keep_alive = False
            return True
        if self._held is not None:
            self._refuse(503, "Service Unavailable", "too many connections", "connections")
        elif state is h11.IDLE and self.conn.trailing_data[0]:
            self._refuse(400, "Bad Request", "incomplete request headers", "malformed")
        elif state is h11.SEND_BODY and cycle is not None and not cycle.response_started:
            # the body ended early (Content-Length or chunked): the handler must not wait on
            cycle.disconnected = True
            cycle.message_event.set()
            self._refuse(
                400, "Bad Request", "the connection closed before the request body ended",
                "malformed",
            )  # fmt: skip
        return None  # asyncio closes the transport (after flushing an answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._disarm_body()
        super().connection_lost(exc)
        self._settings.released()

    def on_response_complete(self) -> None:
        if self._probe:
            self.transport.close()  # over the limit: one answer, then the slot is freed
        super().on_response_complete()

    def _should_upgrade(self) -> bool:
        # No WebSocket or h2c here (ws="none"): the Upgrade header is ignored and the
        # request served as HTTP/1.1 (RFC 9110 7.8). uvicorn logged two warnings per
        # request: 5,000 pipelined requests gave 10,000 log lines.
        return False

    def send_400_response(self, msg: str) -> None:
        # h11 refused it (bad Content-Length, bad line, NUL, TLS): uvicorn sent text/plain
        # without a length, ended by a close; the daemon's JSON shape instead
        self._refuse(400, "Bad Request", "malformed HTTP request", "malformed")

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _disarm_body(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._held is not None:
            self._refuse(503, "Service Unavailable", "too many connections", "connections")
        elif self.conn.their_state is h11.IDLE:
            limit = self._settings.header_timeout
            self._refuse(
                408, "Request Timeout", f"request headers not received within {limit:g} s",
                "header_timeout",
            )  # fmt: skip

    def _body_expired(self) -> None:
        self._body_deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            limit = self._settings.body_timeout
            self._refuse(
                408, "Request Timeout", f"request body not received within {limit:g} s",
                "body_timeout",
            )  # fmt: skip
            if cycle is not None:
                cycle.message_event.set()  # a handler reading the body gives up now
            return
        # answered already (a route that reads no body): the rest is not waited for
        self._settings.reject("body_timeout")
        cycle.keep_alive = False
        if cycle.response_complete:
            self.transport.close()

    def _refuse(self, code: int, reason: str, message: str, why: str) -> None:
        self._settings.reject(why)
        self._held = None
        if self.cycle is not None:
            self.cycle.disconnected = True  # the handler's late answer goes nowhere
        self.transport.write(_raw_answer(code, reason, message))
        self.transport.close()


class _Server(uvicorn.Server):
    """uvicorn's server, embedded: no signal handlers, its own accept loop, and a
    stop that always ends quietly.

    asyncio's server accepts up to `backlog` connections per wake-up whatever the
    descriptors left: a burst of 1,500 under a limit of 1,024 logged 2,024 EMFILE
    tracebacks and reset the connections it could not answer. Here connections are
    accepted only while fewer than `ceiling` are open (the others wait in the listen
    queue, answered later rather than reset), and running out of descriptors pauses
    accepting briefly with one warning a minute, no traceback.
    """

    def __init__(self, config: _Config, listener: socket.socket, ceiling: int) -> None:
        super().__init__(config)
        self.listener = listener
        self.ceiling = ceiling
        self._loop: asyncio.AbstractEventLoop | None = None
        self._factory: Callable[[], asyncio.Protocol] | None = None
        self._accepting = False
        self._closed = False
        self._connecting: set[asyncio.Task[None]] = set()
        self._retry: asyncio.TimerHandle | None = None
        self._warned = -_WARN_EVERY

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The daemon owns SIGTERM/SIGINT/SIGHUP. uvicorn 0.54 skips its handlers off
        # the main thread already; this keeps it so if the daemon ever runs us there.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # no asyncio server: we accept ourselves
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_loop_exception)
        self._loop = loop
        self._factory = functools.partial(
            _Protocol, config=self.config, server_state=self.server_state,
            app_state=self.lifespan.state,
        )  # fmt: skip
        self.listener.setblocking(False)
        self.resume()

    def resume(self) -> None:
        """Accept again if below the ceiling (called when a connection closes)."""
        if self._accepting or self._closed or self._retry is not None or self._loop is None:
            return
        if self._open() < self.ceiling:
            self._loop.add_reader(self.listener.fileno(), self._accept)
            self._accepting = True

    def released(self) -> None:
        """A connection closed: its slot and descriptor are free, accept again now
        (rather than after the pause that running out of descriptors began)."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self.resume()

    def _pause(self) -> None:
        if self._accepting and self._loop is not None:
            self._loop.remove_reader(self.listener.fileno())
            self._accepting = False

    def _open(self) -> int:
        # a finished connect is already among the connections (its discard callback
        # may not have run yet): counted twice it paused accepting below the ceiling
        pending = sum(1 for task in self._connecting if not task.done())
        return len(self.server_state.connections) + pending

    def _accept(self) -> None:
        assert self._loop is not None and self._factory is not None
        for _ in range(_ACCEPT_BATCH):
            if self._open() >= self.ceiling:
                self._pause()  # beyond the ceiling clients wait in the listen queue
                return
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_FDS:
                    self._out_of_descriptors(exc)
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue  # that client is gone; the next one may be there
                self._out_of_descriptors(exc)  # anything else: pause and retry the same way
                return
            conn.setblocking(False)
            task = self._loop.create_task(self._connect(conn))
            self._connecting.add(task)
            task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[None]) -> None:
        """A connect finished: if accepting paused while it was pending, the slot it
        held may be free now (a connect that failed, or a count that has settled)."""
        self._connecting.discard(task)
        self.resume()

    async def _connect(self, conn: socket.socket) -> None:
        assert self._loop is not None and self._factory is not None
        try:
            await self._loop.connect_accepted_socket(self._factory, conn)
        except OSError:  # gone before its transport was made
            conn.close()

    def _out_of_descriptors(self, exc: OSError) -> None:
        assert self._loop is not None
        self._pause()
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY:
            self._warned = now
            what = "out of file descriptors" if exc.errno in _OUT_OF_FDS else "accept failed"
            logger.warning(
                "%s (%s, %d connections open): new HTTP connections wait in the listen queue",
                what,
                exc.strerror, len(self.server_state.connections),
            )  # fmt: skip

        def retry() -> None:
            self._retry = None
            self.resume()

        self._retry = self._loop.call_later(0.1, retry)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._closed = True
        self._pause()
        if self._retry is not None:
            self._retry.cancel()
        open_connections = len(self.server_state.connections)
        await super().shutdown(sockets)
        # Whatever outlived the graceful wait (a hook body trickling in) is cut now,
        # so the loop closes with no transport left open.
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        await asyncio.sleep(0)
        logger.debug("the HTTP server stopped (%d connections were open)", open_connections)


_loop_warned: dict[str, float] = {}


def _loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The HTTP loop's unhandled errors: one WARNING line, no traceback, at most one a
    minute per kind (asyncio's default logs a multi-line traceback for each)."""
    message = str(context.get("message", "error in the HTTP event loop"))
    exc = context.get("exception")
    kind = f"{message}:{type(exc).__name__}"
    now = time.monotonic()
    if now - _loop_warned.get(kind, -_WARN_EVERY) < _WARN_EVERY:
        return
    _loop_warned[kind] = now
    detail = f": {type(exc).__name__}: {exc}" if exc is not None else ""
    logger.warning("HTTP event loop: %s%s", message, detail)


class _QuietUvicorn(logging.Filter):
    """uvicorn's logger through ours: no lifecycle chatter, no per-client warnings
    (they are counted in botreg_http_rejected_total), no multi-line tracebacks."""

    NOISE = frozenset(
        ("Invalid HTTP request received.", "Exceeded concurrency limit.")
    )  # fmt: skip

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or record.msg in self.NOISE:
            return False
        if str(record.msg).startswith("Cancel %s running task(s)"):
            # a stop with requests still in flight is routine: _Server.shutdown says it
            # at debug (this ERROR fired log-based alerts at every normal stop)
            return False
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            if isinstance(exc, asyncio.CancelledError):  # a handler cut short by stop()
                return False
            record.msg = f"{record.getMessage().strip()}: {type(exc).__name__}: {exc}"
            record.args = ()
            record.exc_info = None
        return True


def _quiet_uvicorn() -> None:
    uv = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietUvicorn) for f in uv.filters):
        uv.addFilter(_QuietUvicorn())


def _fd_budget(wanted: int, probes: int) -> tuple[int, int]:
    """Connections (and probe slots) the descriptors allow.

    The soft RLIMIT_NOFILE is raised to the hard limit when lower (as Go and nginx
    do); beyond what the daemon keeps for itself (Chroma, SQLite, git, logs: a
    quarter of the limit, at most `_FD_RESERVE`) the rest is shared by connections.

    Args:
        wanted: the configured connection limit.
        probes: the configured probe slots beyond it.

    Returns:
        `(max_connections, probe_slots)`, lowered (with a warning) when they do not fit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 4 * (wanted + probes))
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            logger.debug("raised the soft descriptor limit from %d to %d", soft, target)
            soft = target
        except (ValueError, OSError) as exc:
            logger.debug("could not raise the soft descriptor limit from %d: %s", soft, exc)
    if soft == resource.RLIM_INFINITY:
        return wanted, probes
    room = soft - min(_FD_RESERVE, soft // 4)
    if room >= wanted + probes:
        return wanted, probes
    probes = min(probes, max(1, room // 8))
    capped = max(16, room - probes)
    logger.warning(
        "the descriptor limit (%d) allows %d HTTP connections, not %d", soft, capped, wanted
    )
    return capped, probes


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    """A listening socket, bound here so a busy or foreign address fails at once
    (OSError with its errno) rather than inside the server thread."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart over TIME_WAIT
        sock.bind(address)
        sock.listen(backlog)  # clients queue from now on, before the loop runs
    except BaseException:
        sock.close()
        raise
    return sock


def _route(path: str) -> str:
    """The metric label for a path: the route template, never the client's text."""
    if path in ("/healthz", "/readyz", "/status", "/metrics", "/hooks/git", "/bots"):
        return path
    if path.startswith("/bots/"):
        return "/bots/{bot_id}"
    if path.startswith("/knowledge/"):
        return "/knowledge/{domain}/query" if path.endswith("/query") else "/knowledge/{domain}"
    return "other"


class DaemonHTTP:
    """Serves the daemon's endpoints from a background thread.

    The socket is bound in the constructor: an address that cannot be used raises
    OSError there (EADDRINUSE, EADDRNOTAVAIL, EACCES), before `start()`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        status: Callable[[], dict[str, Any]],
        metrics: Callable[[], str],
        wake: Callable[[], None],
        query: Callable[[str, str, int], list[dict[str, Any]]],
        readiness: Callable[[], tuple[bool, list[str]]],
        hook_secret: Callable[[], bytes | None],
        branch: str,
        bots: Callable[[], list[dict[str, Any]] | bytes] | None = None,
        bot: Callable[[str], dict[str, Any] | bytes | None] | None = None,
        domain_status: Callable[[str], dict[str, Any] | None] | None = None,
        api_token: Callable[[], bytes | None] | None = None,
        telemetry: Metrics | None = None,
        role: Callable[[], str] | None = None,
        served_commit: Callable[[], str] | None = None,
        serves: Callable[[str], bool | None] | None = None,
        writes: WriteAPI | None = None,
        max_connections: int = 2048,
        max_threads: int = 16,
        header_timeout: float = 10.0,
        body_timeout: float = 30.0,
        keep_alive: int = 5,
        max_body: int = MAX_BODY,
        backlog: int = 2048,
        probe_slots: int = 64,
    ) -> None:
        """Bind `host:port` and prepare the server (not yet serving).

        Args:
            host: address to listen on ("" for every address).
            port: port (0 picks a free one; see `address`).
            status: the status document.
            metrics: the Prometheus exposition text.
            wake: called when a verified push asks for a sync.
            query: `(domain, text, k)` to ranked chunks; LookupError for an unknown domain.
            readiness: `(ready, reasons)`.
            hook_secret: the push webhook secret (None: hooks are refused).
            branch: the branch whose pushes trigger a sync.
            bots: every bot, resolved and masked (None: no /bots); bytes are
                JSON already masked and rendered, sent as they are.
            bot: one bot by id, None if unknown (default: filter `bots`); bytes as
                for `bots`.
            domain_status: a domain's ingestion status, None if never ingested.
            api_token: the bearer token; None means no authentication (loopback
                only, checked by the caller), an empty token fails closed (503).
            telemetry: the daemon's metrics, where requests and refusals are counted.
            role: the HA role (leader, standby, single) `/readyz` reports.
            served_commit: the commit `/bots` answers come from (`X-Botreg-Commit`).
            serves: True if a commit is the served one or one of its ancestors
                (`?at=COMMIT`: otherwise wait up to `AT_WAIT` seconds, then 409);
                None if it can never be (not a commit): 409 at once.
            writes: the write routes (`--allow-writes`); None: writes answer 403.
            max_connections: open connections; beyond them only probes are served.
            max_threads: worker threads for the handlers that block.
            header_timeout: seconds for a request's headers to arrive.
            body_timeout: seconds for a hook's body to arrive.
            keep_alive: seconds an idle keep-alive connection stays open.
            max_body: bytes of a hook's body.
            backlog: the listen queue (the kernel caps it at net.core.somaxconn).
            probe_slots: connections beyond `max_connections` that serve only
                `/healthz` and `/readyz` (others: 503); past them clients wait in
                the listen queue.
        """
        self.status = status
        self.metrics = metrics
        self.wake = wake
        self.query = query
        self.readiness = readiness
        self.hook_secret = hook_secret
        self.branch = branch
        self.bots = bots
        self.bot = bot
        self.domain_status = domain_status
        self.api_token = api_token
        self.telemetry = telemetry or Metrics()
        self.role = role
        self.served_commit = served_commit
        self.serves = serves
        self.writes = writes
        self.max_threads = max_threads
        self.body_timeout = body_timeout
        self.max_body = max_body
        self._limiter: anyio.CapacityLimiter | None = None
        self._at_waiters = 0
        self._requests = self.telemetry.counter(
            "botreg_http_requests_total", "HTTP requests answered, by route and status code",
            ["route", "code"],
        )  # fmt: skip
        self._durations = self.telemetry.histogram(
            "botreg_http_request_duration_seconds", "Time to answer an HTTP request, by route",
            ["route"],
        )  # fmt: skip
        self._rejected = self.telemetry.counter(
            "botreg_http_rejected_total",
            "Connections or requests refused before a handler ran, by reason "
            "(connections, header_timeout, body_timeout, too_large, malformed)",
            ["reason"],
        )
        self.max_connections, self.probe_slots = _fd_budget(max_connections, probe_slots)
        self.socket = _bind(host, port, backlog)
        _quiet_uvicorn()
        app = Starlette(
            routes=self._routes(),
            exception_handlers={HTTPException: self._http_error, Exception: self._server_error},
        )
        app.router.redirect_slashes = False  # the guard strips a trailing slash instead
        self._app = app
        config = _Config(
            self._guard,
            loop="asyncio",
            http=_Protocol,
            ws="none",
            lifespan="off",
            interface="asgi3",  # a bound coroutine method looks like ASGI2 to its sniffing
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            headers=[("server", "botreg")],
            backlog=backlog,
            # ours limits first (the accept loop, the probe-only slots)
            limit_concurrency=self.max_connections + self.probe_slots + 1,
            timeout_keep_alive=keep_alive,
            timeout_graceful_shutdown=1,
        )
        config.settings = _Settings(
            self.max_connections,
            header_timeout,
            body_timeout,
            lambda why: self._rejected.labels(reason=why).inc(),
        )
        self.server = _Server(config, self.socket, self.max_connections + self.probe_slots)
        config.settings.released = self.server.released
        self.thread = threading.Thread(target=self._serve, name="botreg-http", daemon=True)

    @property
    def address(self) -> str:
        """host:port actually bound (port 0 picks a free one)."""
        host, port = self.socket.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def app(self) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
        """The ASGI application (for Starlette's TestClient)."""
        return self._guard

    def start(self) -> None:
        """Serve in the background (the socket already listens: clients queue)."""
        self.thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Stop serving: open connections are closed, handlers still running are
        abandoned after a second; returns within about `timeout` seconds."""
        if not self.thread.is_alive():
            self.socket.close()
            return
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.thread.is_alive():  # pragma: no cover - a handler that ignores cancellation
            self.server.force_exit = True
            self.thread.join(1.0)
            logger.warning("the HTTP server did not stop within %.0f s", timeout)
        self.socket.close()

    def _serve(self) -> None:
        try:
            self.server.run(sockets=[])  # _Server accepts on self.socket itself
        except BaseException as exc:  # the thread's boundary: say it, the daemon goes on
            logger.error("the HTTP server stopped: %s: %s", type(exc).__name__, exc)

    # --- the ASGI side -----------------------------------------------------------------

    async def _guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Path normalisation, authentication and measurement around the routes."""
        if scope["type"] != "http":  # lifespan (the test client's); uvicorn runs none
            await self._app(scope, receive, send)
            return
        path = _path_of(scope["path"])
        scope = {**scope, "path": path}
        route = _route(path)
        started = time.perf_counter()
        code = [0]

        async def measured(message: Any) -> None:
            if message["type"] == "http.response.start":
                code[0] = message["status"]
            await send(message)

        try:
            refusal = self._authorize(path, scope["headers"]) or self._no_body(
                scope["method"], route, scope["headers"]
            )
            if refusal is not None:
                await refusal(scope, receive, measured)
            else:
                await self._app(scope, receive, measured)
        finally:
            self._requests.labels(route=route, code=str(code[0])).inc()
            self._durations.labels(route=route).observe(time.perf_counter() - started)

    def _authorize(self, path: str, headers: list[tuple[bytes, bytes]]) -> Response | None:
        """None when the request may go on, else the refusal (401, or 503 fail-closed).

        No token callable: no authentication (loopback only, checked at start-up).
        A callable that gives no token (the file became empty or unreadable) fails
        closed: 503 until it holds one again.
        """
        if self.api_token is None or path in _OPEN:
            return None
        token = self.api_token()
        if not token:
            return _answer(503, {"error": "the API token file is empty or unreadable"})
        # `Bearer <token>`, the scheme in any case (RFC 7235); raw bytes, constant time
        given = b""
        for name, value in headers:
            if name == b"authorization":
                scheme, _, given = value.strip().partition(b" ")
                if scheme.lower() != b"bearer":
                    given = b""
                break
        if given and hmac.compare_digest(given.strip(), token):
            return None
        message = "this endpoint needs Authorization: Bearer <the daemon's API token>"
        return _answer(401, {"error": message}, headers={"WWW-Authenticate": "Bearer"})

    def _no_body(
        self, method: str, route: str, headers: list[tuple[bytes, bytes]]
    ) -> Response | None:
        """413 at once for a body on a route that reads none (all but the hook and
        the writes, which cap their bodies themselves).

        A declared body over `_NO_BODY_MAX`, or a chunked one (its size is unknown),
        is refused unread with `Connection: close`: `GET /healthz` with
        `Content-Length: 1000000000` was accepted and held its connection.
        """
        if route == "/hooks/git" or (method, route) in _WRITES:
            return None  # the hook has its own cap, `max_body`; writes theirs
        for name, value in headers:
            too_large = name == b"transfer-encoding" or (
                name == b"content-length" and (not value.isdigit() or int(value) > _NO_BODY_MAX)
            )
            if too_large:
                self._rejected.labels(reason="too_large").inc()
                message = f"this endpoint takes no request body (at most {_NO_BODY_MAX} bytes)"
                return _answer(413, {"error": message}, headers={"Connection": "close"})
        return None

    async def _blocking(self, handler: Callable[[], Response]) -> Response:
        """Run a handler that may block on the bounded worker pool; 500 if it fails."""
        if self._limiter is None:  # made on the loop's thread, on first use
            self._limiter = anyio.CapacityLimiter(self.max_threads)

        def guarded() -> Response:
            try:
                return handler()
            except Exception as exc:  # the request's boundary: an answer, never a traceback
                logger.warning("request failed: %s: %s", type(exc).__name__, exc)
                logger.debug("traceback of the failed request", exc_info=exc)
                return _answer(500, {"error": f"internal error ({type(exc).__name__})"})

        # abandon_on_cancel: stop() need not wait for a handler stuck in the store
        return await anyio.to_thread.run_sync(
            guarded, limiter=self._limiter, abandon_on_cancel=True
        )

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        """Starlette's own refusals (404 unknown path, 405 with Allow, any other) as JSON."""
        assert isinstance(exc, HTTPException)
        texts = {404: "not found", 405: "method not allowed"}
        text = texts.get(exc.status_code) or exc.detail or "refused"
        return _answer(exc.status_code, {"error": text}, headers=exc.headers)

    async def _server_error(self, request: Request, exc: Exception) -> Response:
        """An exception no handler caught: a JSON 500 naming its type, no traceback."""
        logger.warning("request failed: %s: %s", type(exc).__name__, exc)
        return _answer(500, {"error": f"internal error ({type(exc).__name__})"})

    def _routes(self) -> list[Route]:
        return [
            Route("/healthz", self._healthz),
            Route("/readyz", self._readyz),
            Route("/status", self._status),
            Route("/metrics", self._metrics),
            Route("/bots", self._bots, methods=["GET", "HEAD", "POST"]),
            Route("/bots/{bot_id:path}", self._bot, methods=["GET", "HEAD", "PUT", "DELETE"]),
            Route("/knowledge/{domain}/query", self._query),
            Route("/knowledge/{domain}", self._domain),
            Route("/hooks/git", self._hook, methods=["POST"]),
        ]

    async def _healthz(self, request: Request) -> Response:
        return _answer(200, "ok\n", "text/plain")

    async def _readyz(self, request: Request) -> Response:
        def handle() -> Response:
            ready, reasons = self.readiness()
            body: dict[str, Any] = {"ready": ready, "reasons": reasons}
            if self.role is not None:
                body["role"] = self.role()
            return _answer(200 if ready else 503, body)

        return await self._blocking(handle)

    async def _status(self, request: Request) -> Response:
        return await self._blocking(lambda: _answer(200, self.status()))

    async def _metrics(self, request: Request) -> Response:
        return await self._blocking(lambda: _answer(200, self.metrics(), CONTENT_TYPE))

    async def _offload(self, work: Callable[[], Any]) -> Any:
        """Run a call that may block (git, SQLite) on the bounded worker pool."""
        if self._limiter is None:  # made on the loop's thread, on first use
            self._limiter = anyio.CapacityLimiter(self.max_threads)
        return await anyio.to_thread.run_sync(work, limiter=self._limiter, abandon_on_cancel=True)

    async def _at(self, request: Request) -> Response | None:
        """`?at=COMMIT` (contract section 5): None once COMMIT is served (or an ancestor
        of the served commit), waiting up to `AT_WAIT` s; else a 409 (400 if malformed).

        The wait is on the event loop, not on a worker thread: waiters cost no
        thread, so they cannot starve `/readyz` (60 of them used to delay it 15 s).
        At most `AT_MAX_WAITERS` wait at once (beyond: 409 with Retry-After at once).
        The served commit is re-checked (one git call, on the pool) only when it
        moves. An id that can never be applied (a tree, a blob, a prefix of no
        commit: `serves` answers None) is refused at once.
        """
        at = request.query_params.get("at")
        serves = self.serves
        if at is None or serves is None:
            return None
        if not _COMMIT.fullmatch(at):
            return _answer(400, {"error": "at: expected a commit id (4 to 40 hex digits)"})
        current = self.served_commit or (lambda: "")
        served = current()
        if served and served.startswith(at):  # the common case: no thread, no git
            return None
        verdict = await self._offload(lambda: serves(at))
        if verdict:
            return None
        if verdict is None:
            return self._not_served(at, "is not a commit of this registry")
        if self._at_waiters >= AT_MAX_WAITERS:
            return self._not_served(
                at, f"is not applied here yet and {AT_MAX_WAITERS} requests wait already",
                headers={"Retry-After": "1"},
            )  # fmt: skip
        self._at_waiters += 1  # only the loop's thread touches it
        try:
            deadline = anyio.current_time() + AT_WAIT
            while anyio.current_time() < deadline:
                await anyio.sleep(0.1)
                now = current()
                if now == served:
                    continue  # nothing applied since the last check: same answer
                served = now
                verdict = await self._offload(lambda: serves(at))
                if verdict:
                    return None
                if verdict is None:
                    return self._not_served(at, "is not a commit of this registry")
        finally:
            self._at_waiters -= 1
        return self._not_served(at, "is not applied here yet")

    def _not_served(self, at: str, why: str, headers: Mapping[str, str] | None = None) -> Response:
        """The 409 of `?at=COMMIT`, saying what is served."""
        served = self.served_commit() if self.served_commit is not None else ""
        return _answer(
            409,
            {
                "error": f"commit {at} {why} (serving {served[:12] or 'nothing'}); "
                "retry later or ask another daemon",
                "served_commit": served,
            },
            headers=headers,
        )

    def _served(self, render: Callable[[], Any]) -> Response:
        """A 200 with `render()` and the `X-Botreg-Commit` it came from (the commit is
        read before and after: a commit applied in between is read again)."""
        commit = self.served_commit or (lambda: "")
        for _ in range(3):
            before = commit()
            body = render()
            after = commit()
            if before == after:
                break
        if body is None:
            return _answer(404, {"error": "not found"})
        return _answer(200, body, headers={"X-Botreg-Commit": after} if after else None)

    async def _write(self, request: Request, bot_id: str | None) -> Response:
        """POST /bots, PUT or DELETE /bots/{bot_id}: 403 unless writes are on."""
        writes = self.writes
        if writes is None:
            body = request.headers.get("content-length", "0") != "0" or (
                "transfer-encoding" in request.headers
            )
            reply = writes_off(body)
        else:
            try:
                if bot_id is None:
                    reply = await writes.post(request)
                elif request.method == "PUT":
                    reply = await writes.put(request, bot_id)
                else:
                    reply = await writes.delete(request, bot_id)
            except Exception as exc:  # the request's boundary: an answer, never a traceback
                logger.warning("write failed: %s: %s", type(exc).__name__, exc)
                logger.debug("traceback of the failed write", exc_info=exc)
                reply = Reply(500, {"error": f"internal error ({type(exc).__name__})"})
        return _answer(reply.status, reply.body, headers=reply.headers)

    async def _bots(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._write(request, None)
        bots = self.bots
        if bots is None:
            return _answer(404, {"error": "not found"})

        refused = await self._at(request)
        if refused is not None:
            return refused
        return await self._blocking(lambda: self._served(bots))

    async def _bot(self, request: Request) -> Response:
        # the path itself, not the route's match: its `$` also matches before a final
        # newline, so `/bots/echo%0A` was routed as bot `echo`
        bot_id = str(request.scope["path"]).removeprefix("/bots/")
        if request.method in ("PUT", "DELETE"):
            return await self._write(request, bot_id)
        bot, bots = self.bot, self.bots
        if bot is None and bots is None:
            return _answer(404, {"error": "not found"})

        def find() -> dict[str, Any] | bytes | None:
            if bot is not None:
                return bot(bot_id)
            assert bots is not None
            every = bots()
            if isinstance(every, bytes):
                every = json.loads(every)
            found: dict[str, Any] | None = next((b for b in every if b["bot_id"] == bot_id), None)
            return found

        refused = await self._at(request)
        if refused is not None:
            return refused

        def handle() -> Response:
            answer = self._served(find)
            if answer.status_code == 404:
                return _answer(404, {"error": f"bot {bot_id!r} not found"})
            return answer

        return await self._blocking(handle)

    async def _domain(self, request: Request) -> Response:
        domain = str(request.path_params["domain"])
        domain_status = self.domain_status
        if domain_status is None:
            return _answer(404, {"error": "not found"})

        def handle() -> Response:
            state = domain_status(domain)
            if state:
                return _answer(200, state)
            return _answer(404, {"error": f"domain {domain!r} has not been ingested"})

        return await self._blocking(handle)

    async def _query(self, request: Request) -> Response:
        domain = str(request.path_params["domain"])
        params = parse_qs(request.url.query)
        text = (params.get("q") or [""])[0]
        try:
            k = int((params.get("k") or ["5"])[0])
        except ValueError:
            k = 0
        if not text or not 1 <= k <= 100:
            return _answer(400, {"error": "q (text) and k (1-100) are required"})

        def handle() -> Response:
            try:
                return _answer(200, {"results": self.query(domain, text, k)})
            except LookupError as exc:
                return _answer(404, {"error": str(exc)})
            except Exception as exc:  # the store may be busy or unreachable
                logger.warning("query failed: %s: %s", type(exc).__name__, exc)
                return _answer(503, {"error": f"{type(exc).__name__}: {exc}"})

        return await self._blocking(handle)

    async def _hook(self, request: Request) -> Response:
        """A push webhook: the body is read under a size cap and a deadline, then verified."""
        closing = {"Connection": "close"}  # the rest of a refused body is not read
        declared = request.headers.get("content-length", "0")
        if not declared.isdigit():  # h11 refuses these first; this guards other servers
            return _answer(400, {"error": "invalid Content-Length"}, headers=closing)
        if int(declared) > self.max_body:
            self._rejected.labels(reason="too_large").inc()
            return _answer(413, {"error": "payload too large"}, headers=closing)
        body = bytearray()
        try:
            with anyio.fail_after(self.body_timeout):
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > self.max_body:  # chunked, or more than declared
                        self._rejected.labels(reason="too_large").inc()
                        return _answer(413, {"error": "payload too large"}, headers=closing)
        except TimeoutError:
            self._rejected.labels(reason="body_timeout").inc()
            message = f"request body not received within {self.body_timeout:g} s"
            return _answer(408, {"error": message}, headers=closing)
        except ClientDisconnect:  # gone (or answered 400 by the protocol): nobody to tell
            return _answer(400, {"error": "incomplete request"}, headers=closing)
        for name in _SIGNATURES:
            if not all(value.isascii() for value in request.headers.getlist(name)):
                # hmac.compare_digest refuses non-ASCII text: a traceback before
                return _answer(400, {"result": f"{name}: the signature must be ASCII"})
        headers = dict(request.headers.items())

        def handle() -> Response:
            verdict = verify_push(headers, bytes(body), self.hook_secret(), self.branch)
            if verdict.trigger:
                self.wake()
            return _answer(verdict.status, {"result": verdict.reason})

        return await self._blocking(handle)

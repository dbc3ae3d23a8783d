"""The daemon's HTTP surface (loopback by default).

GET  /healthz                         alive
GET  /readyz                          first sync done, store reachable, last success fresh
GET  /status                          the status document (JSON)
GET  /metrics                         Prometheus text
POST /hooks/git                       push webhooks: verified, then trigger a fetch
GET  /knowledge/{domain}/query?q=&k=  ranked chunks (so `botreg query` works while the
                                      daemon holds the embedded store)
GET  /bots, /bots/{bot_id}            the seed's HTTP registry contract:
                                      {"bot_id", "config", "status"}, resolved and masked
GET  /knowledge/{domain}              a domain's ingestion status

With an API token (--api-token-file) every endpoint but /healthz, /readyz and the
signed /hooks/git needs `Authorization: Bearer <token>` (the scheme in any case); a
token file that becomes empty or unreadable closes them (503), never opens them.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from botreg.daemon.hooks import verify_push
from botreg.daemon.metrics import CONTENT_TYPE
from botreg.secrets import dumps_strict, mask_config, mask_text

__all__ = ["DaemonHTTP"]

logger = logging.getLogger("botreg.http")
_MAX_BODY = 5 * 1024 * 1024


class DaemonHTTP:
    """Serves the daemon's endpoints from a background thread."""

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
        bots: Callable[[], list[dict[str, Any]]] | None = None,
        domain_status: Callable[[str], dict[str, Any] | None] | None = None,
        api_token: Callable[[], bytes | None] | None = None,
    ) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "botreg"

            def log_message(self, fmt: str, *args: Any) -> None:
                logger.debug("%s " + fmt, self.address_string(), *args)

            def _send(
                self,
                code: int,
                body: str | dict[str, Any] | list[Any],
                content_type: str = "application/json",
            ) -> None:
                # Every response is masked here, whatever handler built it: values under
                # secret-like keys, PEM blocks, tokens, URL credentials; and strict JSON.
                if isinstance(body, str):
                    text = mask_text(body)
                else:
                    text = dumps_strict(mask_config(body), indent=2)
                data = text.encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self, path: str) -> bool:
                """Endpoints other than health (and signed hooks) need the bearer token.

                No token callable: no authentication (loopback only, checked at
                start-up). A callable that gives no token (the file became empty
                or unreadable) fails closed: 503 until it holds one again.
                """
                if owner.api_token is None or path in ("/healthz", "/readyz", "/hooks/git"):
                    return True
                token = owner.api_token()
                if not token:
                    self._send(503, {"error": "the API token file is empty or unreadable"})
                    return False
                # `Bearer <token>`, the scheme in any case (RFC 7235)
                scheme, _, given = self.headers.get("Authorization", "").strip().partition(" ")
                if scheme.lower() == "bearer" and hmac.compare_digest(
                    given.strip().encode("utf-8", "replace"), token
                ):
                    return True
                self.send_response(401)
                self.send_header("WWW-Authenticate", "Bearer")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False

            def do_GET(self) -> None:
                url = urlparse(self.path)
                path = url.path.rstrip("/") or "/"
                if not self._authorized(path):
                    return
                if path == "/bots" and owner.bots is not None:
                    self._send(200, owner.bots())
                    return
                if path.startswith("/bots/") and owner.bots is not None:
                    bot_id = unquote(path[len("/bots/") :])
                    found = [b for b in owner.bots() if b["bot_id"] == bot_id]
                    if found:
                        self._send(200, found[0])
                    else:
                        self._send(404, {"error": f"bot {bot_id!r} not found"})
                    return
                if (
                    path.startswith("/knowledge/")
                    and path.count("/") == 2
                    and owner.domain_status is not None
                ):
                    domain = unquote(path[len("/knowledge/") :])
                    state = owner.domain_status(domain)
                    if state:
                        self._send(200, state)
                    else:
                        self._send(404, {"error": f"domain {domain!r} has not been ingested"})
                    return
                if path == "/healthz":
                    self._send(200, "ok\n", "text/plain")
                elif path == "/readyz":
                    ready, reasons = owner.readiness()
                    self._send(200 if ready else 503, {"ready": ready, "reasons": reasons})
                elif path == "/status":
                    self._send(200, owner.status())
                elif path == "/metrics":
                    self._send(200, owner.metrics(), CONTENT_TYPE)
                elif path.startswith("/knowledge/") and path.endswith("/query"):
                    domain = unquote(path[len("/knowledge/") : -len("/query")])
                    params = parse_qs(url.query)
                    text = (params.get("q") or [""])[0]
                    try:
                        k = int((params.get("k") or ["5"])[0])
                    except ValueError:
                        k = 0
                    if not text or not 1 <= k <= 100:
                        self._send(400, {"error": "q (text) and k (1-100) are required"})
                        return
                    try:
                        self._send(200, {"results": owner.query(domain, text, k)})
                    except LookupError as exc:
                        self._send(404, {"error": str(exc)})
                    except Exception as exc:  # the store may be busy or unreachable
                        logger.warning("query failed: %s: %s", type(exc).__name__, exc)
                        self._send(503, {"error": f"{type(exc).__name__}: {exc}"})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:
                if not self._authorized(urlparse(self.path).path.rstrip("/")):
                    return
                if urlparse(self.path).path.rstrip("/") != "/hooks/git":
                    self._send(404, {"error": "not found"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > _MAX_BODY:
                    self._send(413, {"error": "payload too large"})
                    return
                body = self.rfile.read(length)
                verdict = verify_push(
                    dict(self.headers.items()), body, owner.hook_secret(), owner.branch
                )
                if verdict.trigger:
                    owner.wake()
                self._send(verdict.status, {"result": verdict.reason})

        self.status = status
        self.metrics = metrics
        self.wake = wake
        self.query = query
        self.readiness = readiness
        self.hook_secret = hook_secret
        self.branch = branch
        self.bots = bots
        self.domain_status = domain_status
        self.api_token = api_token
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="botreg-http", daemon=True
        )

    @property
    def address(self) -> str:
        """host:port actually bound (port 0 picks a free one)."""
        host, port = self.server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"{name}:{port}"

    def start(self) -> None:
        """Serve in the background."""
        self.thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

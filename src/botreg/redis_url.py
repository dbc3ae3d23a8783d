"""Redis URLs as operators give them (`--events-redis`, `--ha-redis`): checked the way
redis-py will read them, and their passwords kept out of every output.

One check for every flag that takes a Redis URL, so the stream sink and the HA
lease accept and refuse the same URLs with the same messages.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis

from botreg.errors import UsageError
from botreg.secrets import redact_url, remember_secret

__all__ = ["CallDeadline", "check_redis_url", "remember_redis_credentials", "usage_checked"]

_SCHEMES = ("redis", "rediss", "unix")
_EXAMPLE = "redis://HOST:PORT/DB, rediss://HOST:PORT/DB or unix:///PATH/redis.sock"


def remember_redis_credentials(url: str) -> None:
    """Register the password of a Redis URL as a secret of the process.

    Call it before anything can print the URL or an error about it: from then on
    `mask_text` (every log line, error message and event) masks it. The user
    name is not registered: it is no secret (`default`, `botreg` would be masked
    in every message), and `redact_url` drops the whole userinfo of a URL anyway.
    """
    values: list[str] = []
    try:
        parts = urlsplit(url)
        if parts.password:
            values.append(parts.password)
        for name, found in parse_qs(parts.query).items():
            if name.lower() == "password":
                values.extend(found)
    except ValueError:  # unparsable: the loose reading below still finds it
        pass
    loose = _loose_password(url)
    if loose:
        values.append(loose)
    for value in values:
        remember_secret(value)
        remember_secret(unquote(value))


def _loose_password(url: str) -> str:
    """The password as a person meant it when it holds `#`, `/` or `?` unencoded.

    A parser ends the host part at the first `/`, `?` or `#`, so
    `redis://:pa#ss@host` has no password for it and `:pa` as its host: the
    whole text before the last `@` is then the secret, whatever a parser says.
    """
    rest = url.partition("://")[2]
    if "@" not in rest:
        return ""
    userinfo = rest.rpartition("@")[0]
    return userinfo.partition(":")[2] or userinfo


def _misplaced_userinfo(url: str) -> bool:
    """True if an `@` lies past the host part (an unencoded `/`, `?` or `#` before it)."""
    rest = url.partition("://")[2]
    host_part = re.split(r"[/?#]", rest, maxsplit=1)[0]
    return "@" in rest and "@" not in host_part


def check_redis_url(url: str) -> str:
    """Check a Redis URL the way the client will read it; returns its redacted form.

    Raises:
        ValueError: not redis://, rediss:// or unix://, no host or socket path, a
            bad port or database; the message shows the URL redacted.
    """
    shown = redact_url(url)
    problem = f"{shown}: expected {_EXAMPLE}"
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise ValueError(f"{shown}: a URL has no spaces or control characters")
    if _misplaced_userinfo(url):
        raise ValueError(
            f"{shown}: the user name or password holds `/`, `?` or `#`: percent-encode "
            "it (%2F, %3F, %23; also %40 for @, %3A for :, %25 for %)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number in range
    except ValueError:
        raise ValueError(f"{problem} (the port is not a number from 1 to 65535)") from None
    if parts.scheme not in _SCHEMES or not url.startswith(f"{parts.scheme}://"):
        raise ValueError(problem)
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(f"{problem} (a unix:// URL needs the socket's path)")
        return _client_reads(url, shown, problem)
    if not parts.hostname:
        raise ValueError(f"{problem} (no host)")
    if port == 0:
        raise ValueError(f"{problem} (the port is not a number from 1 to 65535)")
    db = unquote(parts.path).strip("/")
    if db and not db.isdigit():
        raise ValueError(f"{problem} (the path is the database number, e.g. /0)")
    return _client_reads(url, shown, problem)


def _client_reads(url: str, shown: str, problem: str) -> str:
    """The redacted URL if redis-py reads its query parameters too (`?db=`, `?ssl_*=`)."""
    try:
        # from_url reads the query (`?db=x` fails here); a parameter no connection
        # takes (`?foo=`) fails only when one is made: making one, unconnected,
        # finds it now rather than at the first event
        redis.Redis.from_url(url).connection_pool.make_connection()
    # ValueError/TypeError: a bad value (`?db=x`); RedisError: one it refuses when
    # making the connection (`?ssl_cert_reqs=bogus`). The message is redacted: it
    # may quote the value
    except (ValueError, TypeError, redis.RedisError) as exc:
        raise ValueError(f"{problem} ({redact_url(str(exc)).rstrip('.')})") from None
    return shown


def usage_checked(url: str, flag: str) -> str:
    """Remember the URL's password as a secret, then check the URL for `flag`.

    Args:
        url: The URL the operator gave.
        flag: The flag named in the message (`--events-redis`, `--ha-redis`).

    Returns:
        The URL unchanged.

    Raises:
        UsageError: exit 2, with the URL redacted, if the client could not use it.
    """
    remember_redis_credentials(url)  # before any message can quote it
    try:
        check_redis_url(url)
    except ValueError as exc:
        raise UsageError(f"{flag} {exc}") from None
    return url


class CallDeadline:
    """A deadline for a whole Redis call, not for each read.

    redis-py's `socket_timeout` bounds each `recv`: a server (or a man in the
    middle) that trickles a never-ending reply, a few bytes every 50 ms, keeps a
    call alive forever. A timer armed around the whole call disconnects the
    client's connections when it fires (redis-py's disconnect shuts the socket
    down, which wakes the blocked read at once) and keeps doing so every
    `_REPEAT` seconds until the call returns: a connection still being made when
    it first fired (no socket yet) is cut at the next tick. Safe for calls made
    from several threads at once (each has its own timer).

    Args:
        client: The redis-py client whose pool is cut off.
    """

    _REPEAT = 0.25

    def __init__(self, client: Any) -> None:
        self._client = client
        self._local = threading.local()

    @property
    def passed(self) -> bool:
        """True if this thread's last bounded call ran out of time."""
        return bool(getattr(self._local, "passed", False))

    @contextlib.contextmanager
    def bound(self, seconds: float) -> Iterator[None]:
        """Run the body with the connection cut off after `seconds`; sets `passed`."""
        done = threading.Event()
        fired = threading.Event()
        self._local.passed = False
        timer = threading.Timer(max(0.0, seconds), self._fire, (done, fired))
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            done.set()
            timer.cancel()
            self._local.passed = fired.is_set()

    def _fire(self, done: threading.Event, fired: threading.Event) -> None:
        if done.is_set():
            return
        fired.set()
        with contextlib.suppress(Exception):  # a pool closed meanwhile: nothing to cut
            self._client.connection_pool.disconnect()
        again = threading.Timer(self._REPEAT, self._fire, (done, fired))
        again.daemon = True
        again.start()

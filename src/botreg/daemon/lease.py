"""A leader lease in Redis, with a fencing token (issue #11, contract section 2).

Two or more `botreg sync` daemons for one registry and one store elect one
writer with a lease on an existing engine (Redis), not a home-made protocol:

- acquire: `SET botreg:ha:<group>:lease <holder> NX PX <ms>`, and in the same
  Lua script `INCR botreg:ha:<group>:fence`: each acquisition gets a new, larger
  fencing token. The token is never lower than the highest this process has
  seen + 1 (the script takes the max with that floor): after a Redis data loss
  (FLUSHALL, a restart without persistence) it does not go backwards here.
  Across processes only Redis persistence (AOF) keeps it growing;
- a lease key without a TTL is not a botreg lease (botreg always sets PX): a
  foreign `SET` would block every election forever, so acquisition gives it an
  expiry of one lease period (one warning) and the next attempt takes over;
- renew every lease/3 in a thread (Lua: PEXPIRE only while the value is ours);
- release on a clean stop (Lua: DEL only if ours), so a SIGTERM hands over at once;
- every Redis call has a deadline for the whole call (`CallDeadline`), not
  only per read: a server trickling its reply cannot hold a renewal past the
  local deadline;
- a local deadline (the last successful acquire/renew, measured from before the
  request was sent, + lease - margin): past it this process stops writing even if
  Redis cannot be reached, because another daemon may already hold the lease.

`Lease.check()` is the fence every store write and event publish goes through:
it raises `FencedError` unless the token is still Redis's current one and the
local deadline has not passed. A deposed leader (its lease expired or stolen)
therefore fails before its next write, whatever it was doing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from botreg.errors import BotregError, UsageError
from botreg.redis_url import CallDeadline, usage_checked
from botreg.secrets import redact_url

__all__ = ["Fence", "FencedError", "Lease", "check_redis_url", "lease_key", "redis_client"]

logger = logging.getLogger("botreg.daemon")


# KEYS[1] lease, KEYS[2] fence; ARGV[1] holder, ARGV[2] ms, ARGV[3] the token floor.
# The token is taken in the same script as the SET: a crash between the two cannot
# leave a lease without one. Returns {token, 0}; {0, 1} when the key had no TTL
# (a foreign SET: given one lease period); {0, 0} when someone holds it.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local token = redis.call('INCR', KEYS[2])
  local floor = tonumber(ARGV[3])
  if token < floor then
    token = floor
    redis.call('SET', KEYS[2], token)
  end
  return {token, 0}
end
if redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {0, 1}
end
return {0, 0}
"""
# KEYS[1] lease, KEYS[2] fence; ARGV[1] holder, ARGV[2] ms, ARGV[3] token
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[3] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class FencedError(BotregError):
    """This daemon does not hold the lease (or not with that token): it must not write."""


class Fence(Protocol):
    """What a writer checks before each write (see `Lease`)."""

    def token(self) -> int:
        """The fencing token held now; 0 when this daemon is not the leader."""
        ...

    def check(self, token: int | None = None) -> None:
        """Raise FencedError unless `token` (default: the one held now) is current."""
        ...


def check_redis_url(url: str, flag: str = "--ha-redis") -> str:
    """`url` if the Redis client can use it, else a usage error (exit 2); its password
    is remembered as a secret first (see `botreg.redis_url`)."""
    return usage_checked(url, flag)


def redis_client(url: str, timeout: float) -> Any:
    """A redis-py client for `url` whose every call gives up after `timeout` seconds."""
    import redis

    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        health_check_interval=0,
    )


def lease_key(group: str, name: str) -> str:
    """The Redis key `botreg:ha:<group>:<name>` (lease, fence, state)."""
    return f"botreg:ha:{group}:{name}"


def _holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """The leader lease of one HA group; implements `Fence`.

    Args:
        url: The Redis URL (`--ha-redis`); never logged (see `redact_url`).
        group: The HA group: daemons of one registry and store share it.
        lease_seconds: How long a lease lasts without renewal.
        holder: This process's id in the lease key (default: host:pid:random).
        on_lost: Called (on the renewal thread) when a held lease is lost.
    """

    def __init__(
        self,
        url: str,
        group: str,
        lease_seconds: float = 15.0,
        *,
        holder: str | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        if lease_seconds <= 0:
            raise UsageError(f"--lease-seconds {lease_seconds}: must be at least 1")
        self.url = url
        self.where = redact_url(url)
        self.group = group
        self.seconds = float(lease_seconds)
        # the safety margin of the local deadline: clock drift and a late renewal
        self.margin = max(0.05, self.seconds / 10)
        self.holder = holder or _holder_id()
        self.on_lost = on_lost
        self._keys = [lease_key(group, "lease"), lease_key(group, "fence")]
        # a Redis call never blocks longer than a third of the lease: a renewal
        # stuck on a dead socket must not outlive the lease it renews
        self._call_seconds = max(0.2, self.seconds / 3)
        self._client = redis_client(url, self._call_seconds)
        # ... and the whole call too: a reply trickled byte by byte passes any read timeout
        self._call = CallDeadline(self._client)
        self._seen = 0  # the highest fencing token this process has seen: the next floor
        self._lock = threading.Lock()
        self._token = 0
        self._deadline = 0.0  # time.monotonic() past which we must not write
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def client(self) -> Any:
        """The Redis client (shared with the HA state, which lives in the same server)."""
        return self._client

    def bounded(self) -> contextlib.AbstractContextManager[None]:
        """A whole-call deadline (a third of the lease) for a call on `client`: the HA
        state's reads and writes are bounded like the lease's own calls."""
        return self._call.bound(self._call_seconds)

    # --- the Fence protocol ------------------------------------------------------------

    def token(self) -> int:
        """The fencing token held now; 0 when not the leader (or past the deadline)."""
        with self._lock:
            if self._token and time.monotonic() < self._deadline:
                return self._token
            return 0

    def check(self, token: int | None = None) -> None:
        """Raise FencedError unless `token` (default: the one held) may still write.

        Args:
            token: A token taken earlier (an outbox row's); default the one held now.

        Raises:
            FencedError: not the leader, the local deadline passed, the token is no
                longer Redis's current one, or Redis cannot confirm it.
        """
        with self._lock:
            held, deadline = self._token, self._deadline
        wanted = held if token is None else token
        if not wanted or not held:
            raise FencedError("this daemon is not the leader")
        if time.monotonic() >= deadline:
            raise FencedError(f"the lease (token {wanted}) ran out before it was renewed")
        try:
            with self._call.bound(self._bound(deadline)):
                current = self._client.get(self._keys[1])
        except Exception as exc:  # redis errors: we cannot prove we still lead
            raise FencedError(
                f"cannot confirm the lease at {self.where}: {type(exc).__name__}"
            ) from None
        self._saw(current)
        if str(current) != str(wanted):
            raise FencedError(f"token {wanted} was superseded (now {current})")

    # --- acquire, renew, release -------------------------------------------------------

    def held(self) -> bool:
        """True while this process holds the lease by its local clock."""
        return self.token() != 0

    def try_acquire(self) -> int:
        """Take the lease if it is free; returns the new token (0 if someone holds it).

        Raises:
            redis.RedisError: if Redis cannot be reached (the caller retries).
        """
        started = time.monotonic()
        ms = int(self.seconds * 1000)
        with self._lock:
            floor = self._seen + 1
        with self._call.bound(self._call_seconds):
            answer = self._client.eval(_ACQUIRE, 2, *self._keys, self.holder, ms, floor)
        token, foreign = int(answer[0]), int(answer[1])
        if foreign:
            logger.warning(
                "the lease key %s had no expiry: not a botreg lease (botreg always sets one), "
                "e.g. a manual SET; it now expires in %g s, then a daemon takes the lease",
                self._keys[0],
                self.seconds,
            )
        self._saw(token)
        if token:
            with self._lock:
                self._token = token
                self._deadline = started + self.seconds - self.margin
        return token

    def renew(self) -> bool:
        """Extend the held lease; False if it is no longer ours (then it is dropped).

        Raises:
            redis.RedisError: if Redis cannot be reached (the deadline still runs).
        """
        with self._lock:
            token = self._token
        if not token:
            return False
        started = time.monotonic()
        ms = int(self.seconds * 1000)
        with self._lock:
            deadline = self._deadline
        # never past the local deadline: after it the lease is lost anyway
        with self._call.bound(self._bound(deadline)):
            ok = int(self._client.eval(_RENEW, 2, *self._keys, self.holder, ms, token))
        with self._lock:
            if self._token != token:  # released meanwhile
                return False
            if ok:
                self._deadline = started + self.seconds - self.margin
                return True
            self._token = 0
        return False

    def release(self) -> None:
        """Give the lease up now (a clean stop): another daemon may take it at once."""
        with self._lock:
            token, self._token, self._deadline = self._token, 0, 0.0
        if not token:
            return
        try:
            with self._call.bound(self._call_seconds):
                self._client.eval(_RELEASE, 1, self._keys[0], self.holder)
        except Exception as exc:  # it expires by itself within one lease period
            logger.warning("could not release the lease at %s: %s", self.where, type(exc).__name__)

    def _bound(self, deadline: float) -> float:
        """Seconds a call may take: a third of the lease, and not past `deadline`."""
        return max(0.05, min(self._call_seconds, deadline - time.monotonic()))

    def _saw(self, token: object) -> None:
        """Remember a token read from Redis: the floor of the next acquisition."""
        try:
            value = int(str(token))
        except ValueError:  # None (no fence key: a data loss) or foreign text
            return
        with self._lock:
            self._seen = max(self._seen, value)

    def start(self) -> None:
        """Start the renewal thread (renews every lease/3 while the lease is held)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._renewing, name="botreg-lease", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop renewing, release the lease and close the connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.seconds)
            self._thread = None
        self.release()
        try:
            self._client.close()
        except Exception:  # closing a dead connection: nothing to give back
            logger.debug("closing the lease's Redis client failed", exc_info=True)

    def _renewing(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            with self._lock:
                token = self._token
            if not token:
                continue
            try:
                kept = self.renew()
            except Exception as exc:  # Redis down: the local deadline stops the writes
                logger.warning(
                    "could not renew the lease at %s: %s", self.where, type(exc).__name__
                )
                if time.monotonic() < self._deadline:
                    continue
                with self._lock:
                    if self._token == token:
                        self._token = 0
                kept = False
            if not kept:
                logger.warning("lost the lease (token %d): another daemon may lead now", token)
                if self.on_lost is not None:
                    self.on_lost()

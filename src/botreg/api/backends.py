"""The RegistryBackend protocol and the in-memory backend (for tests).

The seed's semantics: `exists`, `list_ids` and `count` see ACTIVE bots only;
`list_all` sees every registration, active or not.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from botreg.api.models import BotNotFoundError, Registration, RegistrationStatus

__all__ = ["InMemoryBackend", "RegistryBackend"]


@runtime_checkable
class RegistryBackend(Protocol):
    """Where bot registrations live (the seed's protocol; every method is a coroutine)."""

    async def initialize(self) -> None:
        """Prepare the backend."""

    async def close(self) -> None:
        """Release resources."""

    async def register(
        self, bot_id: str, config: dict[str, Any], status: str = RegistrationStatus.ACTIVE
    ) -> Registration:
        """Create or replace a bot."""
        ...

    async def update(self, bot_id: str, config: dict[str, Any]) -> Registration:
        """Replace a registered bot's config, keeping its status (KeyError if unknown)."""
        ...

    async def get(self, bot_id: str) -> Registration | None:
        """A bot's registration (active or not), or None."""
        ...

    async def get_config(self, bot_id: str) -> dict[str, Any] | None:
        """A bot's portable config (active or not), or None."""
        ...

    async def list_active(self) -> list[Registration]:
        """Every active bot."""
        ...

    async def list_all(self) -> list[Registration]:
        """Every registration, active or not."""
        ...

    async def list_ids(self) -> list[str]:
        """The ids of the active bots."""
        ...

    async def exists(self, bot_id: str) -> bool:
        """True if the bot is registered and active."""
        ...

    async def count(self) -> int:
        """Number of active bots."""
        ...

    async def deactivate(self, bot_id: str) -> bool:
        """Soft delete: `status: inactive`. False if the bot does not exist."""
        ...

    async def unregister(self, bot_id: str) -> bool:
        """Hard delete. False if the bot does not exist."""
        ...

    async def clear(self) -> None:
        """Remove every registration."""
        ...


def _copy(item: Registration) -> Registration:
    """A registration nobody else holds: editing its config changes nothing stored."""
    return replace(item, config=copy.deepcopy(item.config))


class InMemoryBackend:
    """A dict-backed RegistryBackend for tests and examples.

    Everything it hands out is a copy: editing a returned registration's config
    never changes what is stored. Registrations have no commit; their `version`
    is a digest of config and status (see `botreg.api.models.config_version`).
    """

    def __init__(self) -> None:
        self._items: dict[str, Registration] = {}
        self._lock = asyncio.Lock()

    async def initialize(self) -> None:
        """Nothing to prepare."""
        return None

    async def close(self) -> None:
        """Nothing to release (the registrations stay)."""
        return None

    async def register(
        self, bot_id: str, config: dict[str, Any], status: str = RegistrationStatus.ACTIVE
    ) -> Registration:
        """Create or replace a bot (created_at is kept on replace).

        Args:
            bot_id: The bot's id.
            config: Its portable config (copied).
            status: "active" or "inactive".

        Returns:
            A copy of the stored registration.
        """
        async with self._lock:
            now = datetime.now(UTC)
            previous = self._items.get(bot_id)
            item = Registration(
                bot_id, copy.deepcopy(config), status, previous.created_at if previous else now, now
            )
            self._items[bot_id] = item
            return _copy(item)

    async def update(self, bot_id: str, config: dict[str, Any]) -> Registration:
        """Replace a bot's config, keeping its status.

        Raises:
            BotNotFoundError: (a KeyError) if the bot is not registered.
        """
        previous = self._items.get(bot_id)
        if previous is None:
            raise BotNotFoundError(f"bot {bot_id!r} is not registered: register() it first")
        return await self.register(bot_id, config, previous.status)

    async def get(self, bot_id: str) -> Registration | None:
        """A copy of the bot's registration (active or not), or None."""
        item = self._items.get(bot_id)
        return _copy(item) if item else None

    async def get_config(self, bot_id: str) -> dict[str, Any] | None:
        """A copy of the bot's config (active or not), or None."""
        item = self._items.get(bot_id)
        return copy.deepcopy(item.config) if item else None

    async def list_active(self) -> list[Registration]:
        """Copies of the active registrations, by id."""
        return [_copy(r) for _, r in sorted(self._items.items()) if r.is_active]

    async def list_all(self) -> list[Registration]:
        """Copies of every registration, active or not, by id."""
        return [_copy(r) for _, r in sorted(self._items.items())]

    async def list_ids(self) -> list[str]:
        """The active bots' ids, sorted."""
        return sorted(b for b, r in self._items.items() if r.is_active)

    async def exists(self, bot_id: str) -> bool:
        """True if the bot is registered and active."""
        item = self._items.get(bot_id)
        return item is not None and item.is_active

    async def count(self) -> int:
        """Number of active bots."""
        return sum(1 for r in self._items.values() if r.is_active)

    async def deactivate(self, bot_id: str) -> bool:
        """Set `status: inactive`; False if the bot is not registered."""
        async with self._lock:
            item = self._items.get(bot_id)
            if item is None:
                return False
            self._items[bot_id] = replace(
                item, status=RegistrationStatus.INACTIVE, updated_at=datetime.now(UTC)
            )
            return True

    async def unregister(self, bot_id: str) -> bool:
        """Remove the bot; False if it was not registered."""
        async with self._lock:
            return self._items.pop(bot_id, None) is not None

    async def clear(self) -> None:
        """Remove every registration."""
        async with self._lock:
            self._items.clear()

    def __repr__(self) -> str:
        return f"InMemoryBackend(count={len(self._items)})"

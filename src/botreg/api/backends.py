"""The RegistryBackend protocol and the in-memory backend (for tests)."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from botreg.api.models import Registration, RegistrationStatus

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

    async def get(self, bot_id: str) -> Registration | None:
        """A bot's registration, or None."""
        ...

    async def get_config(self, bot_id: str) -> dict[str, Any] | None:
        """A bot's portable config, or None."""
        ...

    async def list_active(self) -> list[Registration]:
        """Every active bot."""
        ...

    async def list_ids(self) -> list[str]:
        """Every bot id (active or not)."""
        ...

    async def exists(self, bot_id: str) -> bool:
        """True if the bot is registered (active or not)."""
        ...

    async def count(self) -> int:
        """Number of registered bots."""
        ...

    async def deactivate(self, bot_id: str) -> bool:
        """Soft delete: `status: inactive`. False if the bot does not exist."""
        ...

    async def unregister(self, bot_id: str) -> bool:
        """Hard delete. False if the bot does not exist."""
        ...


class InMemoryBackend:
    """A dict-backed RegistryBackend for tests and examples."""

    def __init__(self) -> None:
        self._items: dict[str, Registration] = {}
        self._lock = asyncio.Lock()

    async def initialize(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def register(
        self, bot_id: str, config: dict[str, Any], status: str = RegistrationStatus.ACTIVE
    ) -> Registration:
        async with self._lock:
            now = datetime.now(UTC)
            previous = self._items.get(bot_id)
            item = Registration(
                bot_id, copy.deepcopy(config), status, previous.created_at if previous else now, now
            )
            self._items[bot_id] = item
            return item

    async def update(self, bot_id: str, config: dict[str, Any]) -> Registration:
        """Replace a bot's config, keeping its status (as the seed's example uses)."""
        previous = self._items.get(bot_id)
        status = previous.status if previous else RegistrationStatus.ACTIVE
        return await self.register(bot_id, config, status)

    async def get(self, bot_id: str) -> Registration | None:
        return self._items.get(bot_id)

    async def get_config(self, bot_id: str) -> dict[str, Any] | None:
        item = self._items.get(bot_id)
        return copy.deepcopy(item.config) if item else None

    async def list_active(self) -> list[Registration]:
        return [r for r in self._items.values() if r.is_active]

    async def list_ids(self) -> list[str]:
        return sorted(self._items)

    async def exists(self, bot_id: str) -> bool:
        return bot_id in self._items

    async def count(self) -> int:
        return len(self._items)

    async def deactivate(self, bot_id: str) -> bool:
        async with self._lock:
            item = self._items.get(bot_id)
            if item is None:
                return False
            self._items[bot_id] = replace(
                item, status=RegistrationStatus.INACTIVE, updated_at=datetime.now(UTC)
            )
            return True

    async def unregister(self, bot_id: str) -> bool:
        async with self._lock:
            return self._items.pop(bot_id, None) is not None

"""The registry API's data: registrations, resolved configs, reload modes (names from the seed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

__all__ = ["Registration", "RegistrationStatus", "ReloadMode", "ResolvedConfig"]


class RegistrationStatus:
    """The values of a bot's `status`."""

    ACTIVE = "active"
    INACTIVE = "inactive"


@dataclass(frozen=True)
class Registration:
    """One registered bot: its portable config and where it comes from."""

    bot_id: str
    config: dict[str, Any] = field(repr=False)  # may hold secrets: never in a log line
    status: str = RegistrationStatus.ACTIVE
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    commit: str = ""  # the git commit the config was read from ('' in memory)

    @property
    def is_active(self) -> bool:
        """True if the bot is served."""
        return self.status == RegistrationStatus.ACTIVE


@dataclass(frozen=True)
class ResolvedConfig:
    """A bot's config resolved for an environment, and its version (the commit)."""

    bot_id: str
    config: dict[str, Any] = field(repr=False)  # resolved: holds secrets, never in a log line
    version: str
    environment: str = ""


class ReloadMode(Enum):
    """How a HotReloadManager notices changes."""

    POLLING = "polling"
    EVENT_DRIVEN = "event_driven"
    HYBRID = "hybrid"

"""The registry API's data: registrations, resolved configs, reload modes (names from the seed)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from botreg.errors import BotregError

__all__ = [
    "BotNotFoundError",
    "Registration",
    "RegistrationStatus",
    "ReloadMode",
    "ResolvedConfig",
    "config_version",
]


class BotNotFoundError(BotregError, KeyError):
    """A bot is not registered (or not active where an active one is needed).

    A KeyError, as the seed raises, and a BotregError, as botreg's other errors.
    """

    def __str__(self) -> str:
        # KeyError would show the message quoted, as a repr
        return str(self.args[0]) if self.args else ""


def config_version(config: dict[str, Any], status: str) -> str:
    """The version of a registration kept outside git: a digest of its config and status.

    The same config and status always give the same version (as a git blob id
    does), and any change gives another. JSON with sorted keys is hashed; values
    JSON cannot carry (dates from YAML) count by their text.

    Args:
        config: The bot's config.
        status: Its status.

    Returns:
        "sha256:" and the first 16 hex digits of the digest.
    """
    text = json.dumps([config, status], sort_keys=True, default=str, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


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

    @property
    def version(self) -> str:
        """The git commit it was read from; outside git, `config_version` of it."""
        return self.commit or config_version(self.config, self.status)


@dataclass(frozen=True)
class ResolvedConfig:
    """A bot's config resolved for an environment, and its version.

    The version is the git commit the config was read from; for a registration
    kept outside git (InMemoryBackend) it is `config_version` of its config.
    """

    bot_id: str
    config: dict[str, Any] = field(repr=False)  # resolved: holds secrets, never in a log line
    version: str
    environment: str = ""


class ReloadMode(Enum):
    """How a HotReloadManager notices changes."""

    POLLING = "polling"
    EVENT_DRIVEN = "event_driven"
    HYBRID = "hybrid"

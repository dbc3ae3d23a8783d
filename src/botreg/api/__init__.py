"""The registry API for applications (the seed's names), on top of the git registry.

`from botreg.api import ...` covers the seed's `dataknobs_bots.registry` exports,
its `BotRegistry` family, and its event bus; see docs/python-api.md.
"""

from botreg.api.backends import InMemoryBackend, RegistryBackend
from botreg.api.bot_registry import BotRegistry, InMemoryBotRegistry, create_memory_registry
from botreg.api.caching import CachingRegistryManager, ConfigCachingManager
from botreg.api.eventlog_bus import EventLogEventBus
from botreg.api.events import Event, EventType, MemoryEventBus, RedisEventBus, create_event_bus
from botreg.api.factory import (
    BackendConfigError,
    DataKnobsRegistryAdapter,
    GitRegistryAdapter,
    create_registry_backend,
)
from botreg.api.git_backend import GitRegistryBackend, RegistryValidationError
from botreg.api.http_backend import HTTPRegistryBackend
from botreg.api.http_errors import RegistryWriteError, UnknownBotError
from botreg.api.models import BotNotFoundError, Registration, ReloadMode, ResolvedConfig
from botreg.api.redis_follower import RedisEventFollower
from botreg.api.reload import EventLogFollower, HotReloadManager, RegistryPoller
from botreg.validation.portability import (
    PortabilityError,
    has_resource_references,
    is_portable,
    validate_portability,
)

__all__ = [
    "BackendConfigError",
    "BotNotFoundError",
    "BotRegistry",
    "CachingRegistryManager",
    "ConfigCachingManager",
    "DataKnobsRegistryAdapter",
    "Event",
    "EventLogEventBus",
    "EventLogFollower",
    "EventType",
    "GitRegistryAdapter",
    "GitRegistryBackend",
    "HTTPRegistryBackend",
    "HotReloadManager",
    "InMemoryBackend",
    "InMemoryBotRegistry",
    "MemoryEventBus",
    "PortabilityError",
    "RedisEventBus",
    "RedisEventFollower",
    "Registration",
    "RegistryBackend",
    "RegistryPoller",
    "RegistryValidationError",
    "RegistryWriteError",
    "ReloadMode",
    "ResolvedConfig",
    "UnknownBotError",
    "create_event_bus",
    "create_memory_registry",
    "create_registry_backend",
    "has_resource_references",
    "is_portable",
    "validate_portability",
]

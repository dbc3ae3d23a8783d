"""Change events: CloudEvents 1.0, an in-process bus and its sinks."""

from botreg.events.bus import EventBus
from botreg.events.model import CloudEvent, event_id

__all__ = ["CloudEvent", "EventBus", "event_id"]

"""The two Protocols of the real-time path; implementations live beside them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = ["Delivery", "EventBus", "LiveState"]


@dataclass(frozen=True)
class Delivery:
    """One message taken from the bus: its id, the event (None if it could not be decoded)
    and, for a malformed message, why; ``attempts`` counts deliveries of this message."""

    message_id: str
    event: dict[str, Any] | None
    raw: str
    error: str | None = None
    attempts: int = 1


class EventBus(Protocol):
    """Events in, delivered to a consumer group, acknowledged once applied.

    An event is a JSON-ready dict in the canonical lake columns (``event_id``, ``user_id``,
    ``item_id``, ``event_type``, ``ts`` ISO-8601, ...). Unacknowledged deliveries are delivered
    again (to any consumer) after ``idle_ms`` without an acknowledgement.
    """

    idle_ms: int  # how long a delivery may go unacknowledged before it is delivered again

    def publish(self, events: Sequence[dict[str, Any]]) -> list[str]:
        """Append events; their message ids."""
        ...

    def consume(self, consumer: str, count: int = 100, block_ms: int = 100) -> list[Delivery]:
        """Up to ``count`` deliveries for ``consumer``: first pending ones idle longer than the
        bus's ``idle_ms`` (re-delivery after a consumer died), then new ones; waits up to
        ``block_ms`` when there is nothing."""
        ...

    def ack(self, message_ids: Sequence[str]) -> None:
        """The events are applied: never deliver them again."""
        ...

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Move a message that cannot be applied to the dead-letter stream, with the reason,
        and acknowledge it (never retried forever, never dropped)."""
        ...

    def dead_letters(self) -> list[dict[str, Any]]:
        """The dead-lettered messages: ``{"message_id", "raw", "reason"}``."""
        ...

    def pending(self) -> int:
        """Delivered but not yet acknowledged messages."""
        ...

    def backlog(self) -> int:
        """Messages published but not yet delivered to the group."""
        ...

    def close(self) -> None: ...


class LiveState(Protocol):
    """Per-user live state shared by API replicas and workers (DESIGN §6)."""

    def apply(self, event: dict[str, Any]) -> bool:
        """Apply one event atomically, exactly once by ``event_id``: remember the id (bounded
        set), push ``(item_id, event_type)`` onto the user's recent items (bounded), count the
        event per user and per item by type. False if the id was already applied."""
        ...

    def apply_each(self, events: Sequence[dict[str, Any]]) -> list[bool]:
        """:meth:`apply` for a batch in one round trip: which events were new."""
        ...

    def recent(self, user_id: str) -> list[tuple[str, str]]:
        """The user's recent ``(item_id, event_type)``, oldest first."""
        ...

    def recent_many(self, user_ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        """:meth:`recent` of many users at once."""
        ...

    def set_vectors(
        self,
        vectors: Sequence[tuple[str, str, np.ndarray]],
        histories: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    ) -> None:
        """:meth:`set_vector` for many ``(user_id, name, vector)`` at once; ``histories`` the
        recent items each user's vectors were folded in from (their basis: see
        :meth:`live_user`)."""
        ...

    def set_vector(self, user_id: str, name: str, vector: np.ndarray) -> None:
        """Store a user's vector (``content`` preference, ``collaborative`` factors) without a
        basis: :meth:`vector` reads it, :meth:`live_user` never serves it."""
        ...

    def vector(self, user_id: str, name: str) -> np.ndarray | None: ...

    def live_user(
        self, user_id: str, names: Sequence[str]
    ) -> tuple[list[tuple[str, str]], dict[str, np.ndarray]]:
        """What serving reads of a user, at once: their recent items (as :meth:`recent`) and
        those of their vectors ``names`` that were folded in from exactly these items (stored
        with them as ``histories``); a vector that misses a later event is left out."""
        ...

    def set_item_vectors(self, space: str, vectors: Sequence[tuple[str, str, np.ndarray]]) -> None:
        """Store embeddings of items that arrived after the build, as ``(entity_type, item_id,
        vector)``, in the vector ``space`` (provider and version) they belong to."""
        ...

    def item_vectors(self, space: str, items: Sequence[tuple[str, str]]) -> list[np.ndarray | None]:
        """The stored embeddings of ``(entity_type, item_id)`` pairs in ``space`` (None where
        there is none)."""
        ...

    def user_counters(self, user_id: str) -> dict[str, int]:
        """Events applied for the user, by event type."""
        ...

    def item_counters(self, item_id: str) -> dict[str, int]:
        """Events applied for the item, by event type (live popularity)."""
        ...

    def applied_count(self) -> int:
        """How many distinct events were applied (for checks and metrics)."""
        ...

    def was_applied(self, event_id: str) -> bool: ...

    def clear(self) -> None:
        """Forget everything (tests, a rebuilt model)."""
        ...

    def close(self) -> None:
        """Release connections (the state itself stays where it is)."""
        ...

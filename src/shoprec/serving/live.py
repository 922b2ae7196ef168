"""Events accepted by the API: a durable log and each user's recent activity.

Every accepted event is appended to ``<workspace>/stream/accepted-<date>.jsonl`` before the
request is answered (canonical lake columns, loadable with ``shoprec ingest --format jsonl``),
and its item joins the user's bounded recent history, which the next recommendation request
folds in. The real-time issue puts an event bus and an online store behind the same calls.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["EventLog", "RecentActivity"]


class EventLog:
    """Append-only JSON Lines files of accepted events, one per UTC day."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()

    def append(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"accepted-{datetime.now(UTC):%Y-%m-%d}.jsonl"
        text = "".join(json.dumps(event, sort_keys=True) + "\n" for event in events)
        with self._lock, path.open("a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("accepted-*.jsonl"))


class RecentActivity:
    """Each user's latest ``(item_id, event_type)`` events, newest last, deduplicated by
    ``event_id``; at most ``per_user`` per user and ``max_users`` users (least recent out)."""

    def __init__(self, *, per_user: int = 50, max_users: int = 100_000) -> None:
        self.per_user = per_user
        self.max_users = max_users
        self._users: OrderedDict[str, deque[tuple[str, str]]] = OrderedDict()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, events: Iterable[dict[str, Any]]) -> int:
        """Record events; returns how many were new."""
        added = 0
        with self._lock:
            for event in events:
                if event["event_id"] in self._seen:
                    continue
                self._seen[event["event_id"]] = None
                if len(self._seen) > self.max_users * self.per_user:
                    self._seen.popitem(last=False)
                added += 1
                if event.get("item_id") is None:
                    continue
                user = event["user_id"]
                recent = self._users.pop(user, None) or deque(maxlen=self.per_user)
                recent.append((event["item_id"], event["event_type"]))
                self._users[user] = recent
                if len(self._users) > self.max_users:
                    self._users.popitem(last=False)
        return added

    def history(self, user_id: str) -> list[tuple[str, str]]:
        with self._lock:
            recent = self._users.get(user_id)
            return list(recent) if recent is not None else []

    def __len__(self) -> int:
        return len(self._users)

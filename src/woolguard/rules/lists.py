"""Block, allow and review lists by entity, global or scoped to one campaign, with expiry.

The engine holds a :class:`Lists` snapshot in memory (the service refreshes it from the database); a
lookup is one dict probe per entity of the event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

LIST_KINDS = ("block", "allow", "review")
#: Entities a list entry can name (the keys of :func:`woolguard.engine.entities_of`).
LIST_ENTITIES = ("account", "device", "ip", "ip24", "phone", "phone_block", "address", "payment", "inviter")


@dataclass(frozen=True, slots=True)
class ListEntry:
    list: str  # block | allow | review
    entity: str
    value: str
    campaign_id: str | None = None  # None: every campaign
    expires_at: int | None = None  # epoch ms; None: never
    reason: str = ""
    id: str = ""

    def __post_init__(self) -> None:
        if self.list not in LIST_KINDS:
            raise ValueError(f"list must be one of {LIST_KINDS}, not {self.list!r}")
        if self.entity not in LIST_ENTITIES:
            raise ValueError(f"entity must be one of {LIST_ENTITIES}, not {self.entity!r}")
        if not self.value:
            raise ValueError("value must not be empty")


class Lists:
    def __init__(self, entries: Iterable[ListEntry] = ()):
        self._index: dict[tuple[str, str], list[ListEntry]] = {}
        for e in entries:
            self.add(e)

    def add(self, entry: ListEntry) -> None:
        self._index.setdefault((entry.entity, entry.value), []).append(entry)

    def remove(self, entity: str, value: str, list_kind: str | None = None) -> int:
        found = self._index.get((entity, value), [])
        keep = [e for e in found if list_kind is not None and e.list != list_kind]
        removed = len(found) - len(keep)
        if keep:
            self._index[(entity, value)] = keep
        else:
            self._index.pop((entity, value), None)
        return removed

    def __len__(self) -> int:
        return sum(len(v) for v in self._index.values())

    def match(self, entities: Mapping[str, str | None], campaign_id: str | None, ts_ms: int) -> list[ListEntry]:
        """Entries in force for this event, across all its entities."""
        if not self._index:
            return []
        hits = []
        for entity in LIST_ENTITIES:
            value = entities.get(entity)
            if value is None:
                continue
            for e in self._index.get((entity, value), ()):
                if e.expires_at is not None and e.expires_at <= ts_ms:
                    continue
                if e.campaign_id is not None and e.campaign_id != campaign_id:
                    continue
                hits.append(e)
        return hits

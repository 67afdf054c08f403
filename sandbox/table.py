"""One simulated resource: records generated lazily from the seed, plus the edits made since.

A vendor with 100,000 patients and 750,000 visits would take minutes and gigabytes to build up
front, so a base record is generated when it is read, from (index, version). Only what changed
is held in memory: versions, deletions, records written through the API, and an append-only log
of (updated_at, index) in time order.

Listing order is updated_at, then id, as a vendor's indexed `updated_since` query answers: the
untouched base records (stamped in the past, in index order) first, then the log. A record that
changes while a client pages moves to the end of the log, so a client that follows the cursor to
the end sees every record's latest state once or more, never misses one.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

Record = dict[str, Any]
Generator = Callable[[int, int], Record]  # (index, version) -> the record's fields (no id, no updated_at)


def stamp_of(moment: datetime) -> str:
    """A fixed-width UTC time that sorts as text (microseconds, Z)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Clock:
    """Hands out strictly increasing stamps, shared by every table of a vendor."""

    def __init__(self) -> None:
        self._last = datetime.now(UTC)
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            now = datetime.now(UTC)
            self._last = now if now > self._last else self._last + timedelta(microseconds=1)
            return stamp_of(self._last)


class Table:
    def __init__(self, name: str, prefix: str, base_count: int, generate: Generator, *, clock: Clock, base_epoch: datetime):
        self.name = name
        self.prefix = prefix
        self.base_count = base_count
        self.generate = generate
        self.clock = clock
        self.base_epoch = base_epoch  # base record i was last updated at base_epoch + i ms
        self.count = base_count  # indices handed out so far; created records come after the base
        self.versions: dict[int, int] = {}
        self.written: dict[int, Record] = {}  # records created or replaced through the API (their fields)
        self.stamps: dict[int, str] = {}  # index -> updated_at, for every record touched since start
        self.deleted: set[int] = set()
        self._log_stamps: list[str] = []
        self._log_index: list[int] = []
        self.lock = threading.RLock()

    # --- ids --------------------------------------------------------------------------------------
    def id_of(self, index: int) -> str:
        return f"{self.prefix}{index:07d}"

    def index_of(self, record_id: str) -> int | None:
        if not isinstance(record_id, str) or not record_id.startswith(self.prefix):
            return None
        digits = record_id[len(self.prefix):]
        if not digits.isdigit():
            return None
        index = int(digits)
        return index if 0 <= index < self.count else None

    def base_stamp(self, index: int) -> str:
        return stamp_of(self.base_epoch + timedelta(milliseconds=index))

    # --- reading ----------------------------------------------------------------------------------
    def fields(self, index: int) -> Record:
        written = self.written.get(index)
        return dict(written) if written is not None else self.generate(index, self.versions.get(index, 0))

    def get(self, index: int) -> Record | None:
        """The live record (None when deleted or never existed)."""
        if index is None or not 0 <= index < self.count or index in self.deleted:
            return None
        return self.render(index)

    def render(self, index: int) -> Record:
        record = {"id": self.id_of(index), **self.fields(index)}
        record["updated_at"] = self.stamps.get(index) or self.base_stamp(index)
        return record

    def live_count(self) -> int:
        return self.count - len(self.deleted)

    def live_indices(self):
        return (i for i in range(self.count) if i not in self.deleted)

    def page(self, *, since: str = "", cursor: str = "", limit: int = 100, include_deleted: bool = False,
             where: Callable[[int], bool] | None = None) -> tuple[list[Record], str | None]:
        """Records updated after `since`, from `cursor`, in (updated_at, id) order; returns (records, next cursor).

        Deleted records come as `{id, deleted: true, updated_at}` when `include_deleted`. `where`
        filters by index. The cursor is opaque to clients: "b<index>" in the base, "l<position>" in the log.
        """
        base_start, log_start = 0, 0
        if since:
            base_start = bisect.bisect_right(range(self.base_count), since, key=self.base_stamp)
            log_start = bisect.bisect_right(self._log_stamps, since)
        if cursor:
            where_from, number = cursor[:1], cursor[1:]
            if not number.isdigit() or where_from not in ("b", "l"):
                raise ValueError(f"cursor {cursor!r} is not one this server gave out")
            if where_from == "b":
                base_start = max(base_start, int(number))
            else:
                base_start, log_start = self.base_count, max(log_start, int(number))
        out: list[Record] = []
        index = base_start
        while index < self.base_count:
            if index not in self.stamps and (where is None or where(index)):
                if len(out) == limit:
                    return out, f"b{index}"
                out.append(self.render(index))
            index += 1
        position = log_start
        log_stamps, log_index = self._log_stamps, self._log_index
        end = len(log_stamps)  # entries appended while we page are read by the next page
        while position < end:
            index = log_index[position]
            if self.stamps.get(index) == log_stamps[position] and (where is None or where(index)):
                if index in self.deleted:
                    if include_deleted:
                        if len(out) == limit:
                            return out, f"l{position}"
                        out.append({"id": self.id_of(index), "deleted": True, "updated_at": log_stamps[position]})
                else:
                    if len(out) == limit:
                        return out, f"l{position}"
                    out.append(self.render(index))
            position += 1
        return out, None

    # --- writing ----------------------------------------------------------------------------------
    def _touch(self, index: int) -> str:
        stamp = self.clock.next()
        self.stamps[index] = stamp
        self._log_stamps.append(stamp)
        self._log_index.append(index)
        return stamp

    def create(self, fields: Record) -> int:
        with self.lock:
            index = self.count
            self.count += 1
            self.written[index] = dict(fields)
            self._touch(index)
            return index

    def replace(self, index: int, fields: Record) -> None:
        with self.lock:
            self.written[index] = dict(fields)
            self._touch(index)

    def change(self, index: int) -> None:
        """A change made in the vendor's UI: a generated record moves to its next version."""
        with self.lock:
            if index in self.written:
                self.written[index]["revision"] = self.written[index].get("revision", 0) + 1
            else:
                self.versions[index] = self.versions.get(index, 0) + 1
            self._touch(index)

    def delete(self, index: int) -> None:
        with self.lock:
            self.deleted.add(index)
            self._touch(index)

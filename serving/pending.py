"""Rating events the stream has not applied yet, per user: the read-your-writes buffer.

The topic tail (serving.topic_tail) adds every valid event it reads, `POST /events` adds its own
acknowledged events at once (with the offsets the broker gave them), and the tail's maintenance
drops events once the stream has applied them (`prune`, with the offsets the event log and the
fold-in query's checkpoint both cover, as this process has read them).

Per user it keeps the latest rating per movie by event time (ties: the later offset), so a user's
memory is bounded by the movies they rated since the stream last caught up. Bounds:

- `max_per_user` movies per user, `max_events` in all. A user over either bound (for the total:
  the user whose newest event is oldest) is evicted whole: their entries go and a mark keeps, per
  partition, the highest offset of theirs seen. Until the stream's applied offsets pass that mark
  the user is *incomplete*: their lists come from the sink and the event log as without this
  buffer (possibly stale, never a partial fold-in), and their newer events only move the mark.
- at most `max_events` marks; beyond that the oldest mark is merged into one per-partition
  horizon and every user is incomplete until the stream passes it (nothing tells which users
  the forgotten marks were), then the buffer is whole again.

The first eviction of an episode (and the first lost mark) is logged once; counters say the rest.
Thread-safe: one lock; a lookup of a user with nothing pending takes no lock.
"""

from __future__ import annotations

import heapq
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from streamrec import logs

DEFAULT_MAX_EVENTS = 100_000
DEFAULT_MAX_PER_USER = 1_000
DEFAULT_TAIL_WAIT_S = 0.0  # GETs do not wait for the tail by default (docs/benchmarks.md: its cost)

Event = tuple[int, int, float, int, int, int]  # user_id, movie_id, rating, timestamp, partition, offset
_Entry = tuple[float, int, int, int]  # rating, timestamp, partition, offset


@dataclass(frozen=True)
class PendingRating:
    movie_id: int
    rating: float
    timestamp: int
    partition: int
    offset: int


@dataclass(frozen=True)
class UserPending:
    """One user's pending ratings (latest per movie) and whether they are all there is."""

    ratings: list[PendingRating] = field(default_factory=list)
    complete: bool = True  # False: some of the user's events were evicted (or marks were lost)
    unlisted: int = 0  # how many of `ratings` the stream's lists do not cover yet


NOTHING = UserPending()
INCOMPLETE = UserPending([], False, 0)


@dataclass
class BufferStats:
    events: int
    users: int
    marked_users: int  # evicted users still waiting for the stream
    degraded: bool  # marks were lost: every user incomplete until the stream passes the horizon
    evicted_users: int  # since start
    applied_events: int  # dropped because the stream applied them, since start
    lost_marks: int  # since start


class PendingBuffer:
    def __init__(self, max_events: int = DEFAULT_MAX_EVENTS, max_per_user: int = DEFAULT_MAX_PER_USER):
        if max_events < 1 or max_per_user < 1:
            raise ValueError("the pending buffer's bounds must be >= 1")
        self.max_events = max_events
        self.max_per_user = min(max_per_user, max_events)
        self._lock = threading.Lock()
        self._users: OrderedDict[int, dict[int, _Entry]] = OrderedDict()  # oldest newest-event first
        self._seen: dict[int, dict[int, int]] = {}  # user -> partition -> highest offset seen
        self._marks: OrderedDict[int, dict[int, int]] = OrderedDict()  # evicted user -> partition -> offset
        self._horizon: dict[int, int] = {}  # lost marks, merged
        self._heaps: dict[int, list[tuple[int, int]]] = {}  # partition -> (offset, user): what to prune
        self._heap_items = 0
        self._applied: dict[int, int] = {}  # partition -> next offset the stream has applied
        self._listed: dict[int, int] = {}  # partition -> next offset the stream's lists cover
        self._size = 0
        self._evicted = 0
        self._dropped = 0
        self._lost = 0
        self._episode = False  # an eviction was logged and the buffer has not drained to half since
        self._log = logs.get("serving")

    # -- writes -----------------------------------------------------------------------------------

    def add(self, events: Iterable[Event]) -> None:
        """Buffer events (any order, duplicates welcome: the same offset twice changes nothing)."""
        with self._lock:
            for user, movie, rating, ts, partition, offset in events:
                if offset < self._applied.get(partition, 0):
                    continue  # the stream (and this process's view of it) has it already
                self._push(partition, offset, user)
                mark = self._marks.get(user)
                if mark is not None:  # evicted: only the mark moves, until the stream passes it
                    mark[partition] = max(mark.get(partition, -1), offset)
                    continue
                mine = self._users.get(user)
                if mine is None:
                    mine = self._users[user] = {}
                    self._seen[user] = {}
                else:
                    self._users.move_to_end(user)
                seen = self._seen[user]
                seen[partition] = max(seen.get(partition, -1), offset)
                old = mine.get(movie)
                if old is None:
                    self._size += 1
                    mine[movie] = (float(rating), int(ts), partition, offset)
                elif (ts, offset) > (old[1], old[3]):  # latest by event time; ties: the later offset
                    mine[movie] = (float(rating), int(ts), partition, offset)
                if len(mine) > self.max_per_user:
                    self._evict(user, f"more than {self.max_per_user} pending movies for one user")
            while self._size > self.max_events:
                self._evict(next(iter(self._users)), f"more than {self.max_events} pending events")
            if self._heap_items > 4 * (self.max_events + len(self._marks)) + 1024:
                self._rebuild_heaps()

    def prune(self, applied: dict[int, int], listed: dict[int, int] | None = None) -> int:
        """Drop what the stream has applied: `applied` maps partition -> the next offset both the
        event log (as the ratings index read it) and the stream's lists cover; `listed` -> the next
        offset the lists cover (the fold-in query's committed offsets). Returns events dropped."""
        dropped = 0
        with self._lock:
            for p, o in applied.items():
                if o > self._applied.get(p, 0):
                    self._applied[p] = o
            for p, o in (listed or {}).items():
                if o > self._listed.get(p, 0):
                    self._listed[p] = o
            for p, heap in self._heaps.items():
                upto = self._applied.get(p, 0)
                touched: set[int] = set()
                while heap and heap[0][0] < upto:
                    touched.add(heapq.heappop(heap)[1])
                    self._heap_items -= 1
                for user in touched:
                    dropped += self._drop_applied(user, p, upto)
            if self._horizon and self._passed(self._horizon):
                self._horizon = {}
                self._log.info(
                    "read-your-writes: the stream passed every lost mark; the buffer is whole again"
                )
            if self._episode and self._size <= self.max_events // 2:
                self._episode = False
            self._dropped += dropped
        return dropped

    # -- reads ------------------------------------------------------------------------------------

    def user(self, user_id: int) -> UserPending:
        """The user's pending ratings, latest per movie in offset order; INCOMPLETE when some of
        theirs were evicted (serve them as if there were no buffer)."""
        if user_id not in self._users and user_id not in self._marks and not self._horizon:
            return NOTHING  # the hot path: no lock (dict membership is atomic under the GIL)
        with self._lock:
            if self._horizon or user_id in self._marks:
                return INCOMPLETE
            mine = self._users.get(user_id)
            if not mine:
                return NOTHING
            ratings = sorted(
                (PendingRating(m, r, t, p, o) for m, (r, t, p, o) in mine.items()), key=lambda x: x.offset
            )
            listed = self._listed
            unlisted = sum(1 for x in ratings if x.offset >= listed.get(x.partition, 0))
        return UserPending(ratings, True, unlisted)

    def stats(self) -> BufferStats:
        with self._lock:
            return BufferStats(self._size, len(self._users), len(self._marks), bool(self._horizon),
                               self._evicted, self._dropped, self._lost)  # fmt: skip

    def empty(self) -> bool:
        """Nothing held and nobody marked: no maintenance needed."""
        return not self._users and not self._marks and not self._horizon

    def applied_offsets(self) -> dict[int, int]:
        with self._lock:
            return dict(self._applied)

    # -- internals (lock held) --------------------------------------------------------------------

    def _push(self, partition: int, offset: int, user: int) -> None:
        heapq.heappush(self._heaps.setdefault(partition, []), (offset, user))
        self._heap_items += 1

    def _passed(self, offsets: dict[int, int]) -> bool:
        return all(o < self._applied.get(p, 0) for p, o in offsets.items())

    def _drop_applied(self, user: int, partition: int, upto: int) -> int:
        mark = self._marks.get(user)
        if mark is not None and self._passed(mark):
            del self._marks[user]  # every evicted event of theirs is in the event log now
        mine = self._users.get(user)
        if not mine:
            return 0
        gone = [m for m, (_, _, p, o) in mine.items() if p == partition and o < upto]
        for m in gone:
            del mine[m]
        self._size -= len(gone)
        if not mine:
            # Superseded events of theirs may still be unapplied, but each lost to a newer rating
            # of the same movie that the event log now has: forgetting them changes no list.
            del self._users[user]
            del self._seen[user]
        return len(gone)

    def _evict(self, user: int, why: str) -> None:
        mine = self._users.pop(user)
        self._size -= len(mine)
        self._marks[user] = self._seen.pop(user)
        self._evicted += 1
        if not self._episode:
            self._episode = True
            self._log.warning(
                f"read-your-writes buffer full ({why}): evicting users; their lists come from the sink "
                "and the event log until the stream applies their events (further evictions are "
                "counted in streamrec_pending_evicted_users_total)"
            )
        while len(self._marks) > self.max_events:
            _, lost = self._marks.popitem(last=False)
            for p, o in lost.items():
                self._horizon[p] = max(self._horizon.get(p, -1), o)
            if not self._lost:
                self._log.warning(
                    f"read-your-writes: more than {self.max_events} evicted users waiting for the stream; "
                    "every user's list comes from the sink and the event log until it catches up"
                )
            self._lost += 1

    def _rebuild_heaps(self) -> None:
        """Superseded and duplicate entries pile up in the heaps while the stream does not
        advance; rebuild them from what is held (bounded by the events and marks)."""
        heaps: dict[int, list[tuple[int, int]]] = {}
        for user, mine in self._users.items():
            for _, _, p, o in mine.values():
                heaps.setdefault(p, []).append((o, user))
        for user, mark in self._marks.items():
            for p, o in mark.items():
                heaps.setdefault(p, []).append((o, user))
        for heap in heaps.values():
            heapq.heapify(heap)
        self._heaps = heaps
        self._heap_items = sum(len(h) for h in heaps.values())

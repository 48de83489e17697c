"""Fair turns at a shared resource: the model, shared by the tenants of one deployment.

`FairTurns(limit)` lets at most `limit` holders in at once, like a semaphore. What it adds is who
goes next when a place frees: not whoever came first overall, but the waiting party (a tenant)
whose last turn is the longest ago (a party never served yet first), and within one party its
waiters in arrival order. So a tenant that queues fifty runs delays another tenant's one run by
one turn, not by fifty: round-robin across the parties that wait.

Cancelling a waiter takes it out of its queue; a waiter cancelled just after it was handed a
place passes the place on (to the party the rules choose next) and gives its party back the turn
it did not take. Everything runs on one event loop: no lock is needed, and no method awaits
between reading and changing the state.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

# A party's last turn, counted in turns handed out; a party never served yet has none.
NEVER = -1


@dataclass(eq=False)
class _Waiter:
    party: str
    arrived: int  # the order of arrival, over every party: ties between new parties go by it
    future: asyncio.Future[None] = field(repr=False)
    turn: int = NEVER  # the turn it was handed
    party_was_served: int = NEVER  # its party's last turn before that


class FairTurns:
    """At most `limit` holders of `turn(party)` at once, handed out round-robin across parties."""

    def __init__(self, limit: int, on_depth: Callable[[int], None] | None = None) -> None:
        if limit < 1:
            raise ValueError(f"FairTurns needs a limit of at least 1, not {limit}")
        self.limit = limit
        self._on_depth = on_depth  # told how many wait, each time that changes (a metric)
        self._free = limit
        self._queues: dict[str, deque[_Waiter]] = {}  # only parties that have waiters
        self._served: dict[str, int] = {}  # each party's last turn (parties are few: tenants)
        self._turns = itertools.count()
        self._arrivals = itertools.count()

    @property
    def holders(self) -> int:
        return self.limit - self._free

    @property
    def waiting(self) -> int:
        """Waiters not handed a place yet: the queue's depth."""
        return sum(len(queue) for queue in self._queues.values())

    @asynccontextmanager
    async def turn(self, party: str = "") -> AsyncIterator[None]:
        """Hold one of the places for the block; wait, fairly, while none is free."""
        await self._acquire(party)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, party: str) -> None:
        if self._free > 0 and not self._queues:
            self._free -= 1
            self._served[party] = next(self._turns)
            return
        waiter = _Waiter(party, next(self._arrivals), asyncio.get_running_loop().create_future())
        self._queues.setdefault(party, deque()).append(waiter)
        self._depth_changed()
        try:
            await waiter.future
        except asyncio.CancelledError:
            self._withdraw(waiter)
            raise
        finally:
            self._depth_changed()

    def _depth_changed(self) -> None:
        if self._on_depth is not None:
            self._on_depth(self.waiting)

    def _withdraw(self, waiter: _Waiter) -> None:
        """A cancelled waiter: out of its queue, or, if it was handed a place already, the place
        passed on and its party's turn given back."""
        if waiter.future.done() and not waiter.future.cancelled():
            if self._served.get(waiter.party) == waiter.turn:  # its party has had no turn since
                self._served[waiter.party] = waiter.party_was_served
            self._release()
            return
        queue = self._queues.get(waiter.party)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            if not queue:
                del self._queues[waiter.party]

    def _release(self) -> None:
        self._free += 1
        while self._free > 0 and self._queues:
            self._hand_on(self._next_party())

    def _next_party(self) -> str:
        """The waiting party served least recently (a new one first; between new ones, the one
        whose first waiter came first)."""
        return min(self._queues, key=self._precedence)

    def _precedence(self, party: str) -> tuple[int, int]:
        return self._served.get(party, NEVER), self._queues[party][0].arrived

    def _hand_on(self, party: str) -> None:
        queue = self._queues[party]
        waiter = queue.popleft()
        if not queue:
            del self._queues[party]
        if waiter.future.done():  # cancelled, its task not yet resumed to withdraw: skip it
            return
        waiter.party_was_served = self._served.get(party, NEVER)
        waiter.turn = self._served[party] = next(self._turns)
        waiter.future.set_result(None)
        self._free -= 1

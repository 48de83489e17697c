"""Fair turns at the shared model: round-robin across parties (tenants), first come first served
within one, and a cancelled waiter neither keeps a place nor costs another party its turn."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from llama_agent.runtime.models.backend import ModelSettings
from llama_agent.services.models import ModelService
from llama_agent.services.tenants.fair import FairTurns

from tests.scripted_model import ScriptedModel


class Queue:
    """Waiters on `turns`, each named PARTY+N; records the order they got in, and the most that
    held a place at once."""

    def __init__(self, turns: FairTurns) -> None:
        self.turns = turns
        self.served: list[str] = []
        self.inside = 0
        self.most_inside = 0
        self.tasks: dict[str, asyncio.Task[None]] = {}

    async def _hold(self, party: str, name: str, until: asyncio.Event | None) -> None:
        async with self.turns.turn(party):
            self.served.append(name)
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            if until is not None:
                await until.wait()
            await asyncio.sleep(0)
            self.inside -= 1

    async def add(self, name: str, until: asyncio.Event | None = None) -> None:
        """Start waiter `name` (its party: its letters) and let it reach its place or its queue."""
        party = name.rstrip("0123456789")
        self.tasks[name] = asyncio.create_task(self._hold(party, name, until))
        await asyncio.sleep(0)

    async def finish(self) -> None:
        """Wait for every waiter to be done (a place that leaked fails here, not hangs)."""
        async with asyncio.timeout(5):
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)


async def test_one_waiter_of_a_party_is_served_second_not_after_another_partys_five() -> None:
    queue, gate = Queue(FairTurns(1)), asyncio.Event()
    await queue.add("a1", gate)
    for name in ("a2", "a3", "a4", "a5", "b1"):
        await queue.add(name)
    assert queue.served == ["a1"] and queue.turns.waiting == 5
    gate.set()
    await queue.finish()
    assert queue.served == ["a1", "b1", "a2", "a3", "a4", "a5"]


async def test_parties_take_turns_each_in_its_own_arrival_order() -> None:
    queue, gate = Queue(FairTurns(1)), asyncio.Event()
    await queue.add("x1", gate)
    for name in ("a1", "a2", "a3", "b1", "b2", "b3", "c1"):
        await queue.add(name)
    gate.set()
    await queue.finish()
    assert queue.served == ["x1", "a1", "b1", "c1", "a2", "b2", "a3", "b3"]


async def test_no_more_than_the_limit_hold_a_place_at_once() -> None:
    queue, gate = Queue(FairTurns(2)), asyncio.Event()
    for name in ("a1", "a2", "a3", "b1", "b2"):
        await queue.add(name, gate)
    assert queue.served == ["a1", "a2"] and queue.turns.waiting == 3
    gate.set()
    await queue.finish()
    assert queue.most_inside == 2 and sorted(queue.served) == ["a1", "a2", "a3", "b1", "b2"]
    assert queue.turns.holders == 0 and queue.turns.waiting == 0


async def test_a_waiter_cancelled_in_its_queue_keeps_no_place() -> None:
    queue, gate = Queue(FairTurns(1)), asyncio.Event()
    await queue.add("x1", gate)
    await queue.add("a1")
    await queue.add("b1")
    queue.tasks["a1"].cancel()
    await asyncio.sleep(0)
    assert queue.turns.waiting == 1
    gate.set()
    await queue.finish()
    assert queue.served == ["x1", "b1"] and queue.tasks["a1"].cancelled()
    assert queue.turns.holders == 0 and queue.turns.waiting == 0
    async with asyncio.timeout(1), queue.turns.turn("a"):  # the place is free: at once
        assert queue.turns.holders == 1


async def test_a_waiter_cancelled_once_handed_a_place_passes_it_on_and_its_party_keeps_its_turn() -> None:
    turns = FairTurns(1)
    queue = Queue(turns)
    blocker = turns.turn("x")
    await blocker.__aenter__()
    for name in ("a1", "a2", "b1", "c1"):
        await queue.add(name)
    await blocker.__aexit__(None, None, None)  # a1 is handed the place, but has not run yet
    queue.tasks["a1"].cancel()
    await queue.finish()
    # a1 never ran, so party a has had no turn yet: a2 comes before b and c (they came later).
    assert queue.served == ["a2", "b1", "c1"] and queue.tasks["a1"].cancelled()
    assert turns.holders == 0 and turns.waiting == 0


async def test_a_holder_cancelled_inside_gives_its_place_back() -> None:
    queue, gate = Queue(FairTurns(1)), asyncio.Event()
    await queue.add("a1", gate)
    await queue.add("b1")
    queue.tasks["a1"].cancel()
    await queue.finish()
    assert queue.served == ["a1", "b1"] and queue.turns.holders == 0


async def test_the_model_service_serves_waiting_runs_round_robin(cache_dir: Path) -> None:
    model = ScriptedModel([])
    service = ModelService(ModelSettings(), cache_dir, model.loader())
    backend = await service.model()
    served: list[str] = []

    async def run(name: str) -> None:
        async with service.exclusive(backend, party=name[0]):
            served.append(name)
            await asyncio.sleep(0)

    try:
        async with service.exclusive(backend, party="a"):
            tasks = [asyncio.create_task(run(name)) for name in ("a1", "a2", "a3", "b1")]
            while service.runs_waiting < 4:
                await asyncio.sleep(0)
        await asyncio.gather(*tasks)
    finally:
        service.close()
    assert served == ["b1", "a1", "a2", "a3"]


# -- any mix of parties, limits and cancellations -------------------------------------------------

waiters = st.lists(st.sampled_from("abc"), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(limit=st.integers(1, 3), parties=waiters, cancelled=st.sets(st.integers(0, 11)))
def test_any_queue_is_served_fairly_and_completely(
    limit: int, parties: list[str], cancelled: set[int]
) -> None:
    asyncio.run(_served_fairly(limit, parties, cancelled))


async def _served_fairly(limit: int, parties: list[str], cancelled: set[int]) -> None:
    turns = FairTurns(limit)
    queue, gate = Queue(turns), asyncio.Event()
    for index in range(limit):  # every place taken while the waiters queue up
        await queue.add(f"x{index}", gate)
    names = [f"{party}{index}" for index, party in enumerate(parties)]
    for name in names:
        await queue.add(name)
    gone = {names[index] for index in cancelled if index < len(names)}
    for name in gone:
        queue.tasks[name].cancel()
    gate.set()
    await queue.finish()
    served = [name for name in queue.served if not name.startswith("x")]
    assert sorted(served) == sorted(set(names) - gone)  # each one left served, once
    assert queue.most_inside <= limit and turns.holders == 0 and turns.waiting == 0
    for party in "abc":  # first come, first served within a party
        own = [name for name in served if name[0] == party]
        assert own == sorted(own, key=lambda name: int(name[1:]))
    _assert_round_robin(served)


def _assert_round_robin(served: list[str]) -> None:
    """Between two turns of one party, no other party has two."""
    for index, name in enumerate(served):
        later = served[index + 1 :]
        following = next((i for i, other in enumerate(later) if other[0] == name[0]), None)
        if following is None:
            continue
        between = [other[0] for other in later[:following]]
        assert len(between) == len(set(between)), served

"""Positions across a new epoch, socket-free: the history is a list, reads are calls."""

from __future__ import annotations

import asyncio

import pytest

from wskit.core.history import Entry, Page
from wskit.server.positions import Positions
from wskit.server.relay import Inbound

pytestmark = pytest.mark.timeout(10)


def _post(offset: int, epoch: str) -> Inbound:
    text = f'{{"type":"message","content":"{offset}"}}'
    return Inbound("room", "r", text, offset, epoch=epoch)


async def test_a_new_epochs_first_post_heard_is_not_its_first_post() -> None:
    """A failover gave the room epoch "new" from offset 5 on (the counter goes on);
    posts 6-8 were published while this instance was not listening, and the first
    it hears is 9. It must deliver 6, 7, 8, then 9, under the new epoch, before the
    resubscribe repair would even run (it may come after the next live post)."""
    history = [Entry(i, f'{{"type":"message","content":"{i}"}}') for i in range(1, 10)]
    reads: list[int | None] = []

    async def read(room: str, after: int | None) -> Page:
        reads.append(after)
        return Page("new", 9, [e for e in history if after is not None and e.offset > after],
                    1, base=5)

    delivered: list[tuple[int | None, str | None]] = []
    positions = Positions(lambda post, floors: delivered.append((post.offset, post.epoch)),
                          read)
    for i in range(1, 11):
        positions.arrived(_post(i, "old"))  # 6-10 of the old epoch: lost in the failover
    positions.arrived(_post(9, "new"))
    positions.arrived(_post(10, "new"))  # held while the repair reads
    await asyncio.wait_for(positions.idle(), 5)
    assert delivered[10:] == [(6, "new"), (7, "new"), (8, "new"), (9, "new"), (10, "new")]
    assert reads == [10, 5]  # after its position, then from where the new epoch starts
    assert positions.at("r") == ("new", 10)

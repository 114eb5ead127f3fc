"""Post ids in the in-process store: a repeat is answered, not stored (no sockets).

The same rules hold in the Redis append script (tests/backplane/test_post_id_store.py).
"""

from __future__ import annotations

import pytest

from wskit.core.history import ID_WINDOW, MemoryStreams, Repeat, Retention, once_token

pytestmark = pytest.mark.timeout(10)
KEEP = Retention(size=3, ttl=3600)


def test_a_repeated_id_is_answered_with_the_first_offset_and_stores_nothing() -> None:
    streams = MemoryStreams()
    first = streams.append("r", "a", KEEP, now=0, once=once_token("alice", "p1"))
    again = streams.append("r", "a", KEEP, now=1, once=once_token("alice", "p1"))
    assert isinstance(again, Repeat) and tuple(again) == first
    assert streams.read("r", KEEP, now=1, after=0).top == 1


def test_ids_are_per_user_and_posts_without_one_are_never_repeats() -> None:
    streams = MemoryStreams()
    assert streams.append("r", "a", KEEP, 0, once_token("alice", "p1"))[0] == 1
    assert not isinstance(streams.append("r", "b", KEEP, 0, once_token("bob", "p1")), Repeat)
    assert not isinstance(streams.append("r", "c", KEEP, 0), Repeat)
    assert not isinstance(streams.append("r", "c", KEEP, 0), Repeat)
    assert streams.read("r", KEEP, 0).top == 4


def test_a_user_and_an_id_cannot_spell_another_pair() -> None:
    assert once_token('a","b', "c") != once_token("a", 'b","c')


def test_an_id_is_remembered_while_its_post_is_retained_however_old() -> None:
    streams = MemoryStreams()
    streams.append("r", "a", KEEP, 0, once_token("alice", "old"))
    later = 10 * ID_WINDOW
    for i in range(2):  # two more posts: "old" is still among the last 3
        streams.append("r", f"x{i}", KEEP, later, once_token("bob", f"x{i}"))
    assert streams.append("r", "a", KEEP, later, once_token("alice", "old")) == Repeat(1, _epoch(streams))


def test_an_id_is_remembered_for_the_window_after_its_post_left_the_history() -> None:
    streams = MemoryStreams()
    streams.append("r", "a", KEEP, 0, once_token("alice", "p"))
    for i in range(10):  # a busy room: "p" has left the last 3 at once
        streams.append("r", f"x{i}", KEEP, 1, once_token("bob", f"x{i}"))
    assert isinstance(streams.append("r", "a", KEEP, ID_WINDOW - 1,
                                      once_token("alice", "p")), Repeat)


def test_an_id_is_forgotten_once_neither_holds() -> None:
    streams = MemoryStreams()
    streams.append("r", "a", KEEP, 0, once_token("alice", "p"))
    late = ID_WINDOW + 1
    for i in range(10):
        streams.append("r", f"x{i}", KEEP, late, once_token("bob", f"x{i}"))
    assert not isinstance(streams.append("r", "a", KEEP, late, once_token("alice", "p")),
                          Repeat)


def test_remembered_ids_stay_bounded_in_a_busy_room() -> None:
    streams = MemoryStreams()
    for i in range(1000):  # one post a second: each id older than the window goes
        streams.append("r", "m", KEEP, float(i), once_token("alice", str(i)))
    room = streams._rooms["r"]
    assert len(room.ids) <= ID_WINDOW + 3


def _epoch(streams: MemoryStreams) -> str:
    return streams.read("r", KEEP, 0).epoch

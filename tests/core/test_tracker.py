"""The client's recovery rules (wskit.core.tracker), in memory: no server, no socket.

tests/server/test_recovery.py checks the same rules end to end over real sockets;
here each rule is stated on its own, with the frames a server sends.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from wskit.core import protocol
from wskit.core.tracker import RoomTracker


def joined(room: str, offset: int | None = 0, epoch: str | None = "e1", **extra: Any) -> dict:
    return {"type": "joined", "roomId": room, "offset": offset, "epoch": epoch, "ref": "r1",
            **extra}


def message(room: str, offset: Any, epoch: str | None = "e1", content: str = "hi") -> dict:
    return {"type": "message", "roomId": room, "userId": "bob", "content": content,
            "offset": offset, "epoch": epoch}


def tracking(room: str = "r", offset: int = 0, epoch: str = "e1") -> RoomTracker:
    tracker = RoomTracker()
    assert tracker.received(joined(room, offset, epoch)).deliver
    return tracker


def test_a_plain_join_starts_from_the_rooms_top() -> None:
    tracker = RoomTracker()
    verdict = tracker.received(joined("r", 7, "e1"))
    assert verdict.deliver and verdict.events == []
    assert tracker.rooms == {"r": {"offset": 7, "epoch": "e1"}}


def test_each_message_moves_the_position_on() -> None:
    tracker = tracking()
    for offset in (1, 2, 3):
        assert tracker.received(message("r", offset)).deliver
    assert tracker.rooms["r"] == {"offset": 3, "epoch": "e1"}
    assert tracker.lost == []


def test_a_join_without_a_position_takes_it_from_the_first_message() -> None:
    # joined with "partial" (the history could not be read): no offset, no epoch;
    # the next message gives both, so the rejoin can still ask since
    tracker = RoomTracker()
    partial = {"code": "history_unavailable", "message": "bus down"}
    assert tracker.received({"type": "joined", "roomId": "r", "partial": partial}).deliver
    assert tracker.received(message("r", 4)).deliver
    assert tracker.rooms["r"] == {"offset": 4, "epoch": "e1"}
    assert tracker.rejoin_requests() == [protocol.join_request(
        "r", since=protocol.Since(4, "e1"))]
    assert tracker.lost == []


def history(room: str, offsets: list[int], epoch: str = "e1") -> dict:
    return {"type": "history", "roomId": room, "epoch": epoch, "offset": max(offsets, default=0),
            "messages": [message(room, o, epoch) for o in offsets]}


def test_a_gap_holds_the_message_and_asks_for_exactly_what_is_missing() -> None:
    tracker = tracking(offset=2)
    verdict = tracker.received(message("r", 5))
    assert not verdict.deliver
    assert verdict.repair == protocol.history_request("r", after=2, limit=1000)
    assert not tracker.received(message("r", 6)).deliver  # held behind the gap, in order
    events, messages, again = tracker.repaired("r", 2, history("r", [3, 4, 5, 6]))
    assert events == [] and again is None and [m["offset"] for m in messages] == [3, 4, 5, 6]
    assert tracker.rooms["r"]["offset"] == 6 and tracker.lost == []
    assert tracker.received(message("r", 7)).deliver


def test_what_the_history_no_longer_has_is_announced_as_a_gap() -> None:
    tracker = tracking(offset=2)
    tracker.received(message("r", 9))
    events, messages, _ = tracker.repaired("r", 2, history("r", [6, 7, 8, 9]))  # 3-5 expired
    assert events == [{"type": "gap", "roomId": "r", "missing": [3, 5], "count": 3}]
    assert [m["offset"] for m in messages] == [6, 7, 8, 9] and tracker.lost == ["r"]


def test_a_failed_repair_delivers_what_was_held_and_says_what_is_missing() -> None:
    tracker = tracking(offset=1)
    tracker.received(message("r", 4))
    events, messages, _ = tracker.repaired("r", 1, None)
    assert events[0]["missing"] == [2, 3] and [m["offset"] for m in messages] == [4]


def test_a_history_of_another_epoch_repairs_nothing() -> None:
    tracker = tracking(offset=1)
    tracker.received(message("r", 3))
    events, messages, _ = tracker.repaired("r", 1, history("r", [2, 3], epoch="e2"))
    assert events[0]["missing"] == [2, 2] and [m["offset"] for m in messages] == [3]


def test_the_clients_own_posts_are_no_gap() -> None:
    """A sender is not sent its own post: its ``sent`` offset fills that place."""
    tracker = tracking(offset=1)
    assert tracker.received({"type": "sent", "roomId": "r", "offset": 2, "ref": "r5"}).deliver
    verdict = tracker.received(message("r", 3))
    assert verdict.deliver and verdict.repair is None


def test_own_posts_fetched_by_a_repair_are_not_handed_back() -> None:
    tracker = tracking(offset=1)
    tracker.received(message("r", 4))                       # 2 and 3 seem missing...
    tracker.received({"type": "sent", "roomId": "r", "offset": 3, "ref": "r9"})  # ...3 was ours
    events, messages, _ = tracker.repaired("r", 1, history("r", [2, 3, 4]))
    assert events == [] and [m["offset"] for m in messages] == [2, 4]


def test_a_gap_that_opens_while_one_is_read_is_asked_for_again() -> None:
    tracker = tracking(offset=1)
    tracker.received(message("r", 3))           # 2 missing: a repair reads up to 3...
    tracker.received(message("r", 6))           # ...meanwhile 6 arrives, 4 and 5 unseen
    events, messages, again = tracker.repaired("r", 1, history("r", [2, 3]))
    assert events == [] and [m["offset"] for m in messages] == [2, 3]
    assert again == protocol.history_request("r", after=3, limit=1000)
    events, messages, again = tracker.repaired("r", 3, history("r", [4, 5, 6]))
    assert [m["offset"] for m in messages] == [4, 5, 6] and again is None and not events


def test_a_rejoin_or_a_leave_overtakes_a_repair() -> None:
    tracker = tracking(offset=1)
    tracker.received(message("r", 4))
    tracker.sending(protocol.join_request("r", since=protocol.Since(1, "e1")))
    assert tracker.repaired("r", 1, history("r", [2, 3, 4])) == ([], [], None)  # the replay will
    assert tracker.received(message("r", 2)).deliver
    tracker.received(message("r", 5))
    tracker.received({"type": "left", "roomId": "r"})
    assert tracker.repaired("r", 2, history("r", [3, 4, 5])) == ([], [], None)
    assert "r" not in tracker.held


def test_a_message_at_or_below_the_position_is_a_duplicate() -> None:
    tracker = tracking(offset=3)
    assert not tracker.received(message("r", 3)).deliver
    assert not tracker.received(message("r", 1)).deliver
    assert tracker.received(message("r", 4)).deliver
    assert not tracker.received(message("r", 4)).deliver
    assert tracker.rooms["r"]["offset"] == 4


def test_messages_of_rooms_not_joined_or_without_offsets_pass_untouched() -> None:
    tracker = tracking()
    assert tracker.received(message("elsewhere", 1)).deliver
    assert tracker.received(message("r", None)).deliver  # history off: no offsets
    assert tracker.received(message("r", True)).deliver  # a bool is not an offset
    assert tracker.received(message("r", "3")).deliver
    assert tracker.received({"type": "message", "roomId": ["x"], "offset": 1}).deliver
    assert tracker.rooms == {"r": {"offset": 0, "epoch": "e1"}}


def test_a_new_epoch_is_announced_before_its_first_message_and_counted_as_lost() -> None:
    tracker = tracking(offset=40)
    verdict = tracker.received(message("r", 1, epoch="e2"))
    assert verdict.deliver  # offsets started again: offset 1 is new, not a duplicate
    assert verdict.events == [{"type": "history_reset", "roomId": "r", "epoch": "e2"}]
    assert tracker.rooms["r"] == {"offset": 1, "epoch": "e2"}
    assert tracker.lost == ["r"]
    assert not tracker.received(message("r", 1, epoch="e2")).deliver


def test_leaving_stops_tracking() -> None:
    tracker = tracking()
    tracker.received({"type": "left", "roomId": "r", "ref": "r2"})
    assert tracker.rooms == {}
    assert tracker.received(message("r", 0)).deliver  # no position: nothing is a duplicate


def test_rejoin_frames_carry_since_where_the_position_is_known() -> None:
    tracker = tracking("a", 4, "e1")
    tracker.received(joined("b", None, None))  # a server with history off
    requests = tracker.rejoin_requests()
    assert requests == [protocol.join_request("a", since=protocol.Since(4, "e1")),
                        protocol.join_request("b")]
    assert [protocol.parse(protocol.encode(f)) for f in requests] == [
        protocol.Join("a", None, protocol.Since(4, "e1")), protocol.Join("b")]


def test_sending_a_join_with_since_sets_the_position_before_the_replay() -> None:
    tracker = tracking(offset=9)
    tracker.sending(protocol.join_request("r", since=protocol.Since(4, "e1"), ref="r5"))
    assert tracker.rooms["r"] == {"offset": 4, "epoch": "e1"}
    tracker.sending(protocol.join_request("s"))  # a plain join: its reply decides
    tracker.sending(protocol.post_request("r", "x"))
    assert set(tracker.rooms) == {"r"}


def test_a_recovered_rejoin_in_the_same_epoch_keeps_the_position_for_the_replay() -> None:
    tracker = tracking(offset=4)
    verdict = tracker.received(joined("r", 9, "e1", recovered=True))
    assert verdict.deliver
    assert verdict.events == [{"type": "rejoined", "roomId": "r", "recovered": True,
                               "offset": 9}]
    assert tracker.rooms["r"] == {"offset": 4, "epoch": "e1"}  # 5..9 are on their way
    assert [tracker.received(message("r", n)).deliver for n in (5, 6, 6, 7, 8, 9, 9)] == [
        True, True, False, True, True, True, False]
    assert tracker.lost == []


def test_an_unrecovered_rejoin_is_lost_and_announced() -> None:
    tracker = tracking(offset=4)
    verdict = tracker.received(joined("r", 900, "e1", recovered=False))
    assert verdict.events[0]["recovered"] is False
    assert tracker.lost == ["r"]


def test_a_rejoin_into_another_epoch_starts_from_that_epochs_top() -> None:
    tracker = tracking(offset=4)
    verdict = tracker.received(joined("r", 2, "e2", recovered=False))
    assert tracker.rooms["r"] == {"offset": 2, "epoch": "e2"}
    assert [e["type"] for e in verdict.events] == ["rejoined"] and tracker.lost == ["r"]
    assert not tracker.received(message("r", 2, epoch="e2")).deliver
    assert tracker.received(message("r", 3, epoch="e2")).deliver


def test_other_frames_are_delivered_and_change_nothing() -> None:
    tracker = tracking()
    for frame in ({"type": "sent", "ref": "r3"}, {"type": "direct", "from": "x", "content": ""},
                  {"type": "joined"}, {"type": "left", "roomId": 3}, {"type": "presence"}, {}):
        verdict = tracker.received(frame)
        assert verdict.deliver and verdict.events == []
    assert tracker.rooms == {"r": {"offset": 0, "epoch": "e1"}}


@given(st.lists(st.tuples(st.integers(1, 30), st.booleans()), max_size=60))
def test_whatever_the_overlap_and_the_gaps_each_offset_is_delivered_once_and_in_order(
        arrivals: list[tuple[int, bool]]) -> None:
    """A replay and the live stream interleave, with gaps; each repair is answered
    (from a history holding every offset) at once or some arrivals later: the
    application sees 1, 2, 3... up to the highest offset that arrived, each once."""
    tracker = tracking()
    delivered: list[int] = []
    pending: list[dict] = []

    top = 0  # the server's top: at least the highest offset that arrived

    def answer(request: dict) -> None:
        after, limit = request["after"], request["limit"]
        page = list(range(after + 1, top + 1))[:limit]
        _, messages, again = tracker.repaired("r", after, history("r", page) | {"offset": top})
        delivered.extend(m["offset"] for m in messages)
        if again is not None:
            pending.append(again)

    for n, answer_now in arrivals:
        top = max(top, n)
        verdict = tracker.received(message("r", n))
        delivered.extend(e["offset"] for e in verdict.events if e.get("type") == "message")
        if verdict.deliver:
            delivered.append(n)
        if verdict.repair is not None:
            pending.append(verdict.repair)
        if answer_now and pending:
            answer(pending.pop(0))
    while pending:
        answer(pending.pop(0))
    assert delivered == list(range(1, top + 1))
    assert tracker.lost == []

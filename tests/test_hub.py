"""The room hub, without sockets: plain objects stand in for connections."""

from __future__ import annotations

import pytest

from wskit.hub import Hub


class Tab:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


@pytest.fixture
def hub() -> Hub[Tab]:
    return Hub()


def test_two_tabs_of_one_user_both_receive_and_sender_tab_is_skipped(hub: Hub[Tab]) -> None:
    a1, a2, b = Tab("a1"), Tab("a2"), Tab("b")
    assert hub.add(a1, "alice") is True
    assert hub.add(a2, "alice") is False  # not the first connection of alice
    hub.add(b, "bob")
    for tab in (a1, a2, b):
        hub.join(tab, "lobby")
    assert hub.room_targets("lobby", exclude=a1) == [a2, b]
    assert hub.room_targets("lobby") == [a1, a2, b]
    assert hub.user_targets("alice") == [a1, a2]
    assert hub.members("lobby") == ["alice", "bob"]


def test_closing_one_tab_keeps_the_other_in_its_rooms(hub: Hub[Tab]) -> None:
    a1, a2 = Tab("a1"), Tab("a2")
    hub.add(a1, "alice")
    hub.add(a2, "alice")
    hub.join(a1, "lobby")
    hub.join(a2, "lobby")
    gone = hub.remove(a1)
    assert gone.user_gone is False and gone.rooms == ["lobby"] and gone.rooms_emptied == []
    assert hub.members("lobby") == ["alice"]
    assert hub.room_targets("lobby") == [a2]


def test_last_connection_leaves_no_trace(hub: Hub[Tab]) -> None:
    a, b = Tab("a"), Tab("b")
    hub.add(a, "alice")
    hub.add(b, "bob")
    hub.join(a, "x")
    hub.join(a, "y")
    hub.join(b, "y")
    gone = hub.remove(a)
    assert gone.user_gone is True
    assert gone.rooms == ["x", "y"] and gone.rooms_emptied == ["x"]
    assert hub.rooms() == ["y"]
    assert hub.users() == ["bob"]
    assert a not in hub
    assert hub.remove(a).user == ""  # idempotent
    hub.remove(b)
    assert hub.rooms() == [] and hub.users() == [] and len(hub) == 0


def test_join_reports_room_creation_and_leave_reports_emptying(hub: Hub[Tab]) -> None:
    a, b = Tab("a"), Tab("b")
    hub.add(a, "alice")
    hub.add(b, "bob")
    assert hub.join(a, "r") is True
    assert hub.join(b, "r") is False
    assert hub.join(a, "r") is False  # joining twice is harmless
    assert hub.leave(a, "r") is False
    assert hub.leave(b, "r") is True
    assert hub.rooms() == []
    with pytest.raises(KeyError):
        hub.leave(a, "r")


def test_targets_are_snapshots_safe_to_use_while_members_disconnect(hub: Hub[Tab]) -> None:
    # The seed iterates a live set while awaiting sends; a disconnect during the
    # loop raises "Set changed size during iteration". Here targets are copies.
    tabs = [Tab(f"t{i}") for i in range(5)]
    for i, tab in enumerate(tabs):
        hub.add(tab, f"u{i}")
        hub.join(tab, "r")
    seen = []
    for tab in hub.room_targets("r"):
        seen.append(tab)
        hub.remove(tabs[4])
    assert seen == tabs
    assert hub.room_targets("r") == tabs[:4]


def test_direct_targets_and_membership_queries(hub: Hub[Tab]) -> None:
    a = Tab("a")
    hub.add(a, "alice")
    assert hub.user_targets("nobody") == []
    assert hub.room_targets("nowhere") == []
    assert hub.is_member(a, "r") is False
    hub.join(a, "r")
    assert hub.is_member(a, "r") and hub.rooms_of(a) == ["r"]
    with pytest.raises(ValueError):
        hub.add(a, "alice")

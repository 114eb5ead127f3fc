"""The room hub, without sockets: plain objects stand in for connections."""

from __future__ import annotations

import pytest

from wskit.core.hub import Hub


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


@pytest.mark.parametrize("seed", range(20))
def test_hub_agrees_with_a_naive_model(seed: int) -> None:
    """Thousands of random operations; after each, the hub answers like a naive model."""
    import random

    rng = random.Random(seed)
    hub: Hub[Tab] = Hub()
    model_user: dict[Tab, str] = {}
    model_rooms: dict[Tab, list[str]] = {}
    tabs = [Tab(f"t{i}") for i in range(12)]
    users, rooms = ["ann", "bob", "cid"], ["r1", "r2", "r3", "r4"]
    for _ in range(1500):
        tab = rng.choice(tabs)
        op = rng.random()
        if tab not in model_user:
            user = rng.choice(users)
            first = hub.add(tab, user)
            assert first == (user not in model_user.values())
            model_user[tab], model_rooms[tab] = user, []
        elif op < 0.45:
            room = rng.choice(rooms)
            existed = any(room in rs for rs in model_rooms.values())
            created = hub.join(tab, room)
            assert created == (not existed)
            if room not in model_rooms[tab]:
                model_rooms[tab].append(room)
        elif op < 0.8:
            room = rng.choice(rooms)
            if room in model_rooms[tab]:
                model_rooms[tab].remove(room)
                emptied = hub.leave(tab, room)
                assert emptied == (not any(room in rs for rs in model_rooms.values()))
            else:
                with pytest.raises(KeyError):
                    hub.leave(tab, room)
        else:
            user = model_user.pop(tab)
            left = model_rooms.pop(tab)
            gone = hub.remove(tab)
            assert gone.user == user and gone.rooms == left
            assert gone.user_gone == (user not in model_user.values())
            assert set(gone.rooms_emptied) == {
                r for r in left if not any(r in rs for rs in model_rooms.values())}
        # the hub's view equals the model's
        for room in rooms:
            members = [t for t in tabs if t in model_rooms and room in model_rooms[t]]
            assert set(hub.room_targets(room)) == set(members)
            assert set(hub.members(room)) == {model_user[t] for t in members}
        assert set(hub.rooms()) == {r for rs in model_rooms.values() for r in rs}
        assert set(hub.users()) == set(model_user.values())
        for user in users:
            assert set(hub.user_targets(user)) == {t for t, u in model_user.items() if u == user}

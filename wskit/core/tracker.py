"""The client's side of recovery: where it is in each room, as plain code.

The server stamps every room message with an ``offset`` (1, 2, 3... per room) and
the room's ``epoch`` (which changes when the room's history is lost). A client
that remembers, per room, the last offset it saw and its epoch can rejoin with
``since`` after a drop and be sent what it missed; the same two numbers let it
drop the messages it already has (the replay and the live stream can overlap)
and notice when offsets start again (a new epoch: a gap it must be told about).

:class:`RoomTracker` holds those rules and no socket: it is fed the frames the
client receives and the joins it sends, and answers whether a frame is new and
which events (``rejoined``, ``history_reset``) go to the application before it.
``wskit.client`` is the I/O around it; ``tests/core/test_tracker.py`` is its
specification. The server's half is :mod:`wskit.core.history` and
``wskit.server.recovery``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .protocol import Since, join_request

__all__ = ["RoomTracker", "Verdict"]

Frame = dict[str, Any]


@dataclass(slots=True)
class Verdict:
    """What to do with one received frame."""

    #: False for a message already seen (a replay overlapping the live stream)
    deliver: bool = True
    #: events for the application, to be queued *before* the frame itself
    events: list[Frame] = field(default_factory=list)


class RoomTracker:
    """Per joined room, the last offset seen and its epoch; dedupe and gap detection."""

    def __init__(self) -> None:
        #: roomId -> {"offset": last offset seen, "epoch": its epoch} (either may be None:
        #: a server with history off sends neither)
        self.rooms: dict[str, dict[str, Any]] = {}
        #: rooms where messages were lost (a rejoin said ``recovered: false``, or a
        #: message came in a new epoch), in the order it happened
        self.lost: list[str] = []

    def sending(self, frame: Frame) -> None:
        """Note a request about to be sent: a join with ``since`` sets the position.

        The replay of what came after ``since`` follows the server's reply, so
        counting must start from there, not from whatever was tracked before.
        """
        since = frame.get("since")
        room = frame.get("roomId")
        if frame.get("type") == "join" and isinstance(since, dict) and isinstance(room, str):
            self.rooms[room] = {"offset": since.get("offset"), "epoch": since.get("epoch")}

    def rejoin_requests(self) -> list[Frame]:
        """One join per tracked room, with ``since`` where the position is known."""
        frames = []
        for room, seen in self.rooms.items():
            known = seen.get("offset") is not None and seen.get("epoch")
            since = Since(seen["offset"], seen["epoch"]) if known else None
            frames.append(join_request(room, since=since))
        return frames

    def received(self, frame: Frame) -> Verdict:
        """Update the positions from one server frame; say whether it is new."""
        kind = frame.get("type")
        if kind == "message":
            return self._message(frame)
        room = frame.get("roomId")
        if kind == "joined" and isinstance(room, str):
            return self._joined(room, frame)
        if kind == "left" and isinstance(room, str):
            self.rooms.pop(room, None)
        return Verdict()

    def _message(self, frame: Frame) -> Verdict:
        room, offset = frame.get("roomId"), frame.get("offset")
        seen = self.rooms.get(room) if isinstance(room, str) else None
        if seen is None or not isinstance(room, str) or type(offset) is not int:
            return Verdict()  # a room not joined (or left), or a server without offsets
        verdict = Verdict()
        epoch = frame.get("epoch")
        if epoch is not None and seen["epoch"] is not None and epoch != seen["epoch"]:
            # the room's history was lost (Redis restarted, TTL): offsets start again;
            # never a silent gap, never a false duplicate
            seen["epoch"] = epoch
            self.lost.append(room)
            verdict.events.append({"type": "history_reset", "roomId": room, "epoch": epoch})
        elif seen["offset"] is not None and offset <= seen["offset"]:
            return Verdict(deliver=False)
        seen["offset"] = offset
        return verdict

    def _joined(self, room: str, frame: Frame) -> Verdict:
        seen = self.rooms.get(room)
        rejoin = "recovered" in frame
        if not rejoin or seen is None or seen["epoch"] != frame.get("epoch"):
            # a plain join, or another history: live from the room's top on
            self.rooms[room] = {"offset": frame.get("offset"), "epoch": frame.get("epoch")}
        # else a rejoin in the same epoch: the replay after our position follows
        if not rejoin:
            return Verdict()
        if not frame["recovered"]:
            self.lost.append(room)
        # an event for the application, before the replayed messages it announces
        return Verdict(events=[{"type": "rejoined", "roomId": room,
                                "recovered": frame["recovered"], "offset": frame.get("offset")}])

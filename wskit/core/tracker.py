"""The client's side of recovery: where it is in each room, as plain code.

The server stamps every room message with an ``offset`` (1, 2, 3... per room) and
the room's ``epoch`` (which changes when the room's history is lost). A client
that remembers, per room, the last offset it saw and its epoch can rejoin with
``since`` after a drop and be sent what it missed; the same two numbers let it
drop the messages it already has (the replay and the live stream can overlap)
and notice when offsets start again (a new epoch: a gap it must be told about).

A gap *within* an epoch (offset 7 after 5, while connected: a server's listener
lost a publication, say) is repaired, not passed over: the message is held, the
client fetches what lies between (``history`` with ``after``), and the missing
messages go to the application before the held ones, in offset order. What the
history no longer has is announced as a ``gap`` event, never skipped silently.
Offsets the client itself posted (its ``sent`` replies) are no gap: a sender is
not sent its own post. (A ``sent`` that arrives only after a repair's history
reply would let that post come back to its sender once: a narrow race, left.)

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

from .protocol import MAX_LIMIT, Since, history_request, join_request

__all__ = ["RoomTracker", "Verdict"]

Frame = dict[str, Any]


@dataclass(slots=True)
class Verdict:
    """What to do with one received frame."""

    #: False for a message already seen (a replay overlapping the live stream)
    deliver: bool = True
    #: events for the application, to be queued *before* the frame itself
    events: list[Frame] = field(default_factory=list)
    #: a gap to repair: send ``history_request(room, after=...)`` and hand the reply
    #: to :meth:`RoomTracker.repaired` (the frame itself is held until then)
    repair: Frame | None = None


#: at most this many messages are held while a gap is repaired; more, and the
#: repair is given up (the held ones are delivered, the gap announced)
MAX_HELD = 1000


class RoomTracker:
    """Per joined room, the last offset seen and its epoch; dedupe and gap detection."""

    def __init__(self) -> None:
        #: roomId -> {"offset": last offset seen, "epoch": its epoch} (either may be None:
        #: a server with history off sends neither)
        self.rooms: dict[str, dict[str, Any]] = {}
        #: rooms where messages were lost (a rejoin said ``recovered: false``, a
        #: message came in a new epoch, or a gap could not be filled), in order
        self.lost: list[str] = []
        #: roomId -> messages held while a gap in that room is repaired
        self.held: dict[str, list[Frame]] = {}
        #: roomId -> offsets this client posted there (no gap: it is not sent them)
        self._own: dict[str, set[int]] = {}
        #: roomId -> the ``after`` of the repair under way
        self._repairing: dict[str, int] = {}
        #: how many repairs were made (a history fetched to fill a gap)
        self.repairs = 0

    def sending(self, frame: Frame) -> None:
        """Note a request about to be sent: a join with ``since`` sets the position.

        The replay of what came after ``since`` follows the server's reply, so
        counting must start from there, not from whatever was tracked before.
        """
        since = frame.get("since")
        room = frame.get("roomId")
        if frame.get("type") == "join" and isinstance(since, dict) and isinstance(room, str):
            self.rooms[room] = {"offset": since.get("offset"), "epoch": since.get("epoch")}
            # the replay after ``since`` covers any gap under repair (and what was held)
            self.held.pop(room, None)
            self._repairing.pop(room, None)

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
            self.held.pop(room, None)
            self._repairing.pop(room, None)
            self._own.pop(room, None)
        if kind == "sent" and isinstance(room, str) and type(frame.get("offset")) is int:
            self._own.setdefault(room, set()).add(frame["offset"])
        return Verdict()

    def _message(self, frame: Frame) -> Verdict:
        room, offset = frame.get("roomId"), frame.get("offset")
        seen = self.rooms.get(room) if isinstance(room, str) else None
        if seen is None or not isinstance(room, str) or type(offset) is not int:
            return Verdict()  # a room not joined (or left), or a server without offsets
        verdict = Verdict()
        epoch = frame.get("epoch")
        if epoch is not None and seen["epoch"] is None:
            # joined without a position (history was unavailable): the first message
            # gives one, so a rejoin can ask ``since`` instead of starting blind
            seen["epoch"] = epoch
        elif epoch is not None and epoch != seen["epoch"]:
            # the room's history was lost (Redis restarted, TTL): offsets start again;
            # never a silent gap, never a false duplicate
            if room in self.held:  # what was held from the old history goes first
                lost_events, held, _ = self._settle(room, [], None)
                verdict.events += lost_events + held
            seen["epoch"] = epoch
            self.lost.append(room)
            verdict.events.append({"type": "history_reset", "roomId": room, "epoch": epoch})
        elif room in self.held:  # a repair is under way: hold on, to keep the order
            held = self.held[room]
            if offset > seen["offset"] and all(m["offset"] != offset for m in held):
                held.append(frame)
                if len(held) > MAX_HELD:  # too much to hold: stop waiting for the repair
                    events, messages, _ = self._settle(room, [], None)
                    return Verdict(deliver=False, events=events + messages)
            return Verdict(deliver=False)
        elif seen["offset"] is not None and offset <= seen["offset"]:
            return Verdict(deliver=False)
        elif seen["offset"] is not None and self._missing(room, seen["offset"], offset):
            self.held[room] = [frame]
            self._repairing[room] = seen["offset"]
            return Verdict(deliver=False, repair=history_request(
                room, after=seen["offset"], limit=MAX_LIMIT))
        seen["offset"] = offset
        self._forget_own(room, offset)
        return verdict

    def _missing(self, room: str, last: int, offset: int) -> bool:
        """Whether an offset between ``last`` and ``offset`` is unseen and not our own."""
        own = self._own.get(room, ())
        return any(o not in own for o in range(last + 1, offset))

    def _forget_own(self, room: str, upto: int) -> None:
        own = self._own.get(room)
        if own:
            own.difference_update([o for o in own if o <= upto])

    def repaired(self, room: str, after: int,
                 reply: Frame | None) -> tuple[list[Frame], list[Frame], Frame | None]:
        """The reply to a repair's ``history`` request (``after`` as sent; None if it
        failed): ``(events, messages, repair)``. Hand the events, then the messages,
        to the application: the missing messages then the held ones, in offset order,
        each once; a ``gap`` event names what the history no longer had. ``repair``:
        one more request to send (messages held beyond what this read could see).
        A reply that a rejoin, a leave or a newer repair overtook changes nothing."""
        if self._repairing.get(room) != after or room not in self.held:
            return [], [], None
        seen = self.rooms[room]
        found: list[Frame] = []
        read_upto = seen["offset"]  # the history was read up to here (None: not read)
        if reply is not None and reply.get("epoch") == seen["epoch"]:
            found = [m for m in reply.get("messages", []) if isinstance(m, dict)
                     and m.get("type") == "message" and type(m.get("offset")) is int]
            top = reply.get("offset")
            if len(found) >= MAX_LIMIT:  # a page as long as asked: it read no further
                read_upto = found[-1]["offset"]
            elif type(top) is int:
                read_upto = top
        else:
            read_upto = None
        return self._settle(room, found, read_upto)

    def _settle(self, room: str, found: list[Frame],
                read_upto: int | None) -> tuple[list[Frame], list[Frame], Frame | None]:
        """Deliver the held messages in order. An offset still missing is lost if
        the history was read past it (or could not be read: ``read_upto`` None);
        one above the read is a gap that opened meanwhile: a new repair."""
        held = self.held.pop(room)
        del self._repairing[room]
        self.repairs += 1
        seen = self.rooms[room]
        own = self._own.get(room, set())
        by_offset: dict[int, Frame] = {}
        for m in found + held:
            if m["offset"] > seen["offset"] and m["offset"] not in own:
                by_offset.setdefault(m["offset"], m)
        events: list[Frame] = []
        messages: list[Frame] = []
        lost: list[int] = []
        position = seen["offset"]
        for offset in sorted(by_offset):
            gap = [o for o in range(position + 1, offset) if o not in own]
            if gap and read_upto is not None and gap[0] > read_upto:
                # opened after the history was read: hold the rest, ask again
                self.held[room] = [by_offset[o] for o in sorted(by_offset) if o >= offset]
                self._repairing[room] = position
                break
            lost += gap
            messages.append(by_offset[offset])
            position = offset
        if lost:
            self.lost.append(room)
            events.append({"type": "gap", "roomId": room, "missing": [lost[0], lost[-1]],
                           "count": len(lost)})
        seen["offset"] = position
        self._forget_own(room, position)
        repair = (history_request(room, after=position, limit=MAX_LIMIT)
                  if room in self.held else None)
        return events, messages, repair

    def _joined(self, room: str, frame: Frame) -> Verdict:
        seen = self.rooms.get(room)
        rejoin = "recovered" in frame
        if not rejoin or seen is None or seen["epoch"] != frame.get("epoch"):
            # a plain join, or another history: live from the room's top on
            self.rooms[room] = {"offset": frame.get("offset"), "epoch": frame.get("epoch")}
            self.held.pop(room, None)
            self._repairing.pop(room, None)
        # else a rejoin in the same epoch: the replay after our position follows
        if not rejoin:
            return Verdict()
        if not frame["recovered"]:
            self.lost.append(room)
        # an event for the application, before the replayed messages it announces
        return Verdict(events=[{"type": "rejoined", "roomId": room,
                                "recovered": frame["recovered"], "offset": frame.get("offset")}])

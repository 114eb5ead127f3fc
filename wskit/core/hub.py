"""Who is connected, who is in which room, and who should receive what.

The hub is plain synchronous code with no I/O and no asyncio: the adapters and
:class:`wskit.server.chat.ChatServer` ask it questions and act on the answers. That is
why it can be tested exhaustively without a socket, and why its answers are
deterministic (rooms and users keep insertion order).

Model:

* a *connection* is any hashable handle (a browser tab); it belongs to one user;
* a *user* may hold several connections (two tabs), and is in a room while at
  least one of its connections is;
* a *room* exists while it has at least one connection: empty rooms vanish.

Every method that changes membership returns what changed at the level above
(first connection of a user, first member of a room, ...), which is exactly what
the backplane needs to subscribe and unsubscribe.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

C = TypeVar("C", bound=Hashable)

__all__ = ["Hub", "Departure"]


@dataclass
class Departure:
    """What removing a connection changed."""

    user: str
    #: the user has no connection left on this hub
    user_gone: bool = False
    #: rooms the connection was in
    rooms: list[str] = field(default_factory=list)
    #: rooms that became empty (and so no longer exist)
    rooms_emptied: list[str] = field(default_factory=list)


class Hub(Generic[C]):
    """Rooms, members and fan-out targets for one server instance."""

    def __init__(self) -> None:
        self._user_of: dict[C, str] = {}
        self._rooms_of: dict[C, dict[str, None]] = {}  # dicts as ordered sets
        self._conns_of_user: dict[str, dict[C, None]] = {}
        self._room_conns: dict[str, dict[C, None]] = {}

    # -- connections ---------------------------------------------------------

    def add(self, conn: C, user: str) -> bool:
        """Register a connection of ``user``; True if it is the user's first."""
        if conn in self._user_of:
            raise ValueError(f"connection {conn!r} is already registered")
        self._user_of[conn] = user
        self._rooms_of[conn] = {}
        conns = self._conns_of_user.setdefault(user, {})
        conns[conn] = None
        return len(conns) == 1

    def remove(self, conn: C) -> Departure:
        """Forget a connection and take it out of every room.

        Idempotent: removing an unknown connection returns an empty departure, so
        a close racing with a failed write cannot raise.
        """
        user = self._user_of.pop(conn, None)
        if user is None:
            return Departure(user="")
        departure = Departure(user=user)
        for room in self._rooms_of.pop(conn):
            departure.rooms.append(room)
            if self._discard_from_room(conn, room):
                departure.rooms_emptied.append(room)
        conns = self._conns_of_user[user]
        del conns[conn]
        if not conns:
            del self._conns_of_user[user]
            departure.user_gone = True
        return departure

    def user_of(self, conn: C) -> str:
        return self._user_of[conn]

    def __contains__(self, conn: object) -> bool:
        return conn in self._user_of

    def __len__(self) -> int:
        """Number of connections."""
        return len(self._user_of)

    # -- rooms ---------------------------------------------------------------

    def join(self, conn: C, room: str) -> bool:
        """Put a connection in a room; True if the room was just created here."""
        rooms = self._rooms_of[conn]  # KeyError for an unknown connection: a caller bug
        if room in rooms:
            return False  # already there: nothing was created
        rooms[room] = None
        conns = self._room_conns.setdefault(room, {})
        conns[conn] = None
        return len(conns) == 1

    def leave(self, conn: C, room: str) -> bool:
        """Take a connection out of a room; True if the room became empty.

        Raises ``KeyError`` if the connection is not in the room, so the caller
        can answer with a ``not_joined`` error instead of silently succeeding.
        """
        del self._rooms_of[conn][room]
        return self._discard_from_room(conn, room)

    def _discard_from_room(self, conn: C, room: str) -> bool:
        conns = self._room_conns[room]
        del conns[conn]
        if not conns:
            del self._room_conns[room]
            return True
        return False

    def user_in_room(self, user: str, room: str) -> bool:
        """True if any connection of ``user`` is in ``room`` (presence: a user is in a
        room while one of its tabs is)."""
        rooms_of = self._rooms_of
        return any(room in rooms_of[c] for c in self._conns_of_user.get(user, ()))

    def is_member(self, conn: C, room: str) -> bool:
        rooms = self._rooms_of.get(conn)
        return rooms is not None and room in rooms

    def rooms(self) -> list[str]:
        """Rooms with at least one connection on this hub."""
        return list(self._room_conns)

    def rooms_of(self, conn: C) -> list[str]:
        return list(self._rooms_of.get(conn, ()))

    def members(self, room: str) -> list[str]:
        """Users in a room, each once, in order of arrival."""
        users = (self._user_of[c] for c in self._room_conns.get(room, ()))
        return list(dict.fromkeys(users))

    def users(self) -> list[str]:
        return list(self._conns_of_user)

    # -- fan-out -------------------------------------------------------------

    def room_targets(self, room: str, exclude: C | None = None) -> list[C]:
        """Connections that should receive a post to ``room``.

        ``exclude`` is the sending connection: it already knows what it sent. The
        sender's *other* connections (tabs) do receive it. The list is a snapshot,
        so the caller may deliver while connections come and go.
        """
        conns = self._room_conns.get(room)
        if not conns:
            return []
        targets = list(conns)
        if exclude is not None and exclude in conns:
            targets.remove(exclude)  # (in C: a room of thousands, after every post)
        return targets

    def user_targets(self, user: str) -> list[C]:
        """Every connection of ``user`` (a snapshot)."""
        return list(self._conns_of_user.get(user, ()))

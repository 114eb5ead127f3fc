"""A wanted set, an applied set, and one worker that makes the backend match.

Two things in wskit follow the hub into a shared backend: the broker's channel
subscriptions (:class:`~wskit.backplane.base.Broker`) and this instance's presence
entries (:class:`~wskit.server.presence.Presence`). Both used to spell out the same
pattern with their own words; this is it, once:

* :meth:`Reconciler.want` and :meth:`Reconciler.unwant` record an intent
  *synchronously*, in the order the hub changed. An intent is never a task of its
  own: a close's queued "unsubscribe" once ran after a later join had re-wanted the
  room and undid it. What runs is computed from the sets when it runs, so no stale
  intent can undo a newer one.
* a single worker applies the difference (``apply(changes)``, one call per batch),
  in order of first change, so a close's "leave" never overtakes a later join;
* when the backend is unreachable, ``apply`` applies a prefix (or nothing) and the
  rest is kept: :meth:`retry` (a timer, a reconnect) tries again; :meth:`reset`
  says the backend lost what it had (a dropped connection) and now holds exactly
  ``applied``, and any call still running on the old connection is disregarded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger("wskit.backplane")

__all__ = ["Reconciler", "Apply"]

K = TypeVar("K", bound=Hashable)

#: ``apply(changes)``: make the backend hold each key whose flag is True and not
#: those whose flag is False, in order; return how many of them (a prefix) it
#: applied. Fewer than all means "unreachable now": the rest wait for a retry.
Apply = Callable[[list[tuple[K, bool]]], Awaitable[int]]


class Reconciler(Generic[K]):
    """Keeps a backend's ``applied`` set equal to ``wanted`` with one worker task.

    ``batch``: hand ``apply`` every pending change at once (subscriptions: one
    SUBSCRIBE for many channels), or one at a time, each computed when its turn
    comes (presence: a join no longer wanted by then is skipped, not made and
    undone). ``eager``: start the worker on every change, or only from
    :meth:`settle` and :meth:`retry`.
    """

    def __init__(self, apply: Apply[K], *, name: str, batch: bool = True,
                 eager: bool = True) -> None:
        self.wanted: set[K] = set()
        #: what the backend holds, as far as we know
        self.applied: set[K] = set()
        self._apply = apply
        self._name = name
        self._batch = batch
        self._eager = eager
        self._paused = False
        #: keys changed since the worker last looked, in order of first change
        self._dirty: dict[K, None] = {}
        self._worker: asyncio.Task[None] | None = None
        #: bumped by :meth:`reset`: results of calls begun before it are disregarded
        self._generation = 0

    @property
    def pending(self) -> bool:
        """Some change is not applied yet."""
        return any((k in self.wanted) != (k in self.applied) for k in self._dirty)

    def want(self, key: K) -> None:
        self.wanted.add(key)
        self._mark(key)

    def unwant(self, key: K) -> None:
        self.wanted.discard(key)
        self._mark(key)

    def _mark(self, key: K) -> None:
        self._dirty[key] = None
        if self._eager:
            self._kick()

    def _kick(self) -> None:
        if self._paused or not self._dirty:
            return
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run(),
                                                                  name=self._name)

    async def settle(self) -> None:
        """Apply every change so far; return once applied, or once the backend
        refused (the rest then waits for :meth:`retry`). Never raises for an outage."""
        self._kick()
        worker = self._worker
        if worker is not None and not worker.done():
            await asyncio.wait({worker})

    async def idle(self) -> None:
        """Wait until no worker runs."""
        while self._worker is not None and not self._worker.done():
            await asyncio.wait({self._worker})

    def retry(self) -> None:
        """Try again what an outage left pending (in the background)."""
        self._kick()

    def reset(self, applied: set[K]) -> None:
        """The backend lost what it had and now holds ``applied``: every difference
        is pending again (applied by the next :meth:`settle` or :meth:`retry`)."""
        self._generation += 1
        self.applied = set(applied)
        for key in self.wanted ^ self.applied:
            self._dirty[key] = None

    def pause(self) -> None:
        """Record changes but apply none until :meth:`resume`."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def forget(self) -> None:
        """Want nothing and hold nothing (the backend is being stopped)."""
        self.wanted.clear()
        self.applied.clear()
        self._dirty.clear()

    async def stop(self) -> None:
        """Cancel the worker (what it had not applied stays pending)."""
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            await asyncio.wait({worker})

    def _next(self) -> list[tuple[K, bool]]:
        """The next changes to apply, taken out of the pending ones."""
        changes: list[tuple[K, bool]] = []
        while self._dirty and (self._batch or not changes):
            key = next(iter(self._dirty))
            del self._dirty[key]
            on = key in self.wanted
            if on != (key in self.applied):
                changes.append((key, on))
        return changes

    async def _run(self) -> None:
        while self._dirty and not self._paused:
            changes = self._next()
            if not changes:
                continue
            generation = self._generation
            done = 0
            try:
                done = await self._apply(changes)
            except Exception:  # a backend bug: keep the intents, log, stop here
                log.exception("%s: applying %d change(s) failed", self._name, len(changes))
            finally:
                if generation == self._generation:
                    for key, on in changes[:done]:
                        if on:
                            self.applied.add(key)
                        else:
                            self.applied.discard(key)
                    # what was not applied goes back to the front, in its order
                    self._dirty = dict.fromkeys([k for k, _ in changes[done:]]) | self._dirty
            if generation == self._generation and done < len(changes):
                return  # unreachable: retry() or reset() and settle() take it from here

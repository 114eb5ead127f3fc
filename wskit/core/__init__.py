"""The sans-I/O core: the wire protocol, rooms, history offsets, rate limits, backoff,
and the client's room tracker.

Nothing here does I/O or imports asyncio, a web framework or a Redis client
(``tests/core/test_purity.py`` checks every module), so every rule in it is
specified by plain function calls, without sockets or an event loop, after
python-websockets' sans-I/O design.
"""

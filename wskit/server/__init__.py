"""The asyncio chat server, shared by both frameworks.

:class:`~wskit.server.chat.ChatServer` owns a connection's life (handshake, read
loop, dispatch, close); :mod:`.delivery` fans posts out, :mod:`.membership` joins
and leaves rooms, :mod:`.relay` and :mod:`.presence` talk to the backplane,
:mod:`.connection` keeps each client's outbox; :mod:`.metrics` (Prometheus),
:mod:`.api` (the server API), :mod:`.frames` (custom frame types) and
:mod:`.asyncapi` (the protocol as a document) build on them. The adapters feed it a
:class:`~wskit.server.connection.Transport`; it never imports a framework.
"""

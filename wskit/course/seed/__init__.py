"""The seed document's four snippets, kept as written so lessons can run them.

These modules are teaching material, *not* part of wskit: each reproduces its
snippet from ``websocket_seed.md`` with the fewest changes that let it be
imported and served (each change is marked ``# wskit:``). Their flaws are on
purpose: the notebooks run them live, show where they break, then show how
wskit does it.

* :mod:`.aiohttp_manager`: ``WebSocketManager`` + ``websocket_handler``
  (note: ``import time`` is still missing, as in the seed)
* :mod:`.fastapi_manager`: ``ConnectionManager`` + ``/ws/{user_id}``
* :mod:`.redis_manager`: ``RedisPubSubManager``
* :mod:`.heartbeat`: ``heartbeat`` + ``on_heartbeat_done`` + an endpoint
"""

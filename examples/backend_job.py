"""A backend job that posts into a chat room through wskit's HTTP API.

It needs no WebSocket and no wskit: one ``POST /api/publish`` with the server's API key
(``docs/api.md``). The post is an ordinary room post: every member on every instance
gets it, with the room's next offset, and it is kept in the history::

    WSKIT_API_KEY=... python examples/backend_job.py http://127.0.0.1:8001 lobby "build 42 is green"
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request


def publish(base_url: str, api_key: str, room: str, content: str, user: str = "ci") -> int:
    """Post ``content`` to ``room`` as ``user``; returns the post's offset."""
    body = json.dumps({"roomId": room, "content": content, "userId": user}).encode()
    request = urllib.request.Request(
        base_url.rstrip("/") + "/api/publish", data=body, method="POST",
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(json.load(response)["offset"])


if __name__ == "__main__":
    url, room, content = sys.argv[1:4]
    print(publish(url, os.environ["WSKIT_API_KEY"], room, content))

"""The AsyncAPI document against the frames a server really sends, on both frameworks."""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema

import wskit
from wskit.server.asyncapi import client_message_schemas, document, server_message_schemas

ROOT = Path(__file__).resolve().parents[2]


def matching(frame: dict[str, Any], schemas: dict[str, dict[str, Any]]) -> list[str]:
    return [name for name, msg in schemas.items()
            if jsonschema.Draft7Validator(msg["payload"]).is_valid(frame)]


class Raw:
    """A raw WebSocket peer that keeps every frame the server sent it."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []

    async def until(self, kind: str, **fields: Any) -> dict[str, Any]:
        while True:
            msg = await self.ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            frame = json.loads(msg.data)
            self.frames.append(frame)
            if frame["type"] == "ping" and "ref" not in frame:
                await self.ws.send_json({"type": "pong"})
            if frame["type"] == kind and all(frame.get(k) == v for k, v in fields.items()):
                return frame

    async def send(self, frame: dict[str, Any] | str) -> None:
        await (self.ws.send_str(frame) if isinstance(frame, str) else self.ws.send_json(frame))


async def test_every_frame_of_a_conversation_matches_exactly_one_message(start, framework) -> None:
    srv = await start(framework, presence_events=True, ping_interval=0.2, ping_timeout=5)

    @srv.server.on("app.typing")
    async def typing(ctx, frame) -> None:
        await ctx.publish("lobby", {"type": "app.typing", "userId": ctx.user})
    async with aiohttp.ClientSession() as session, \
            session.ws_connect(srv.url_for("alice")) as wa, \
            session.ws_connect(srv.url_for("bob")) as wb:
        alice, bob = Raw(wa), Raw(wb)
        await alice.until("welcome")
        await bob.until("welcome")
        await alice.send({"type": "join", "roomId": "lobby", "ref": 1})
        joined = await alice.until("joined")
        await bob.send({"type": "join", "roomId": "lobby", "ref": "b1"})
        await bob.until("joined")
        await alice.until("presence", event="join", userId="bob")
        await alice.send({"type": "message", "roomId": "lobby", "content": "hi", "ref": 2})
        await alice.until("sent", ref=2)
        await bob.until("message")
        await bob.send({"type": "history", "roomId": "lobby", "limit": 5, "ref": "b2"})
        await bob.until("history")
        await alice.send({"type": "presence", "roomId": "lobby", "ref": 3})
        await alice.until("presence", ref=3)
        await alice.send({"type": "direct", "to": "bob", "content": "psst", "ref": 4})
        await alice.until("sent", ref=4)
        await bob.until("direct")
        await alice.send({"type": "app.typing", "ref": "t"})
        await alice.until("ack", ref="t")
        await bob.until("app.typing")
        await alice.send({"type": "ping", "ref": 5})
        await alice.until("pong", ref=5)
        await alice.send({"type": "refresh", "token": srv.token("alice"), "ref": "r"})
        await alice.until("refreshed", ref="r")
        await alice.send("{not json")
        await alice.until("error")
        await alice.send({"type": "join", "roomId": "lobby", "ref": 6,
                          "since": {"offset": 0, "epoch": joined["epoch"]}})
        await alice.until("joined", ref=6)
        await alice.until("message")  # the replayed post
        await bob.send({"type": "leave", "roomId": "lobby", "ref": "b3"})
        await bob.until("left")
        await alice.until("presence", event="leave", userId="bob")
        await alice.until("ping")  # the server's heartbeat (answered with pong)
    schemas = server_message_schemas()
    seen = set()
    for frame in alice.frames + bob.frames:
        names = matching(frame, schemas)
        assert len(names) == 1, f"{frame} matches {names or 'no message'} of the document"
        seen.add(names[0])
    assert seen == set(schemas)  # and the conversation used every message


def test_a_frame_with_an_undocumented_field_matches_nothing() -> None:
    schemas = server_message_schemas()
    good = {"type": "left", "roomId": "lobby", "ref": 1}
    assert matching(good, schemas) == ["left"]
    assert matching({**good, "surprise": True}, schemas) == []
    assert matching({"type": "message", "roomId": "lobby", "content": "x"},
                    client_message_schemas()) == ["post"]


def test_the_document_is_valid_asyncapi_3() -> None:
    schema = json.loads(gzip.decompress(
        (ROOT / "tests/data/asyncapi-3.0.0.schema.json.gz").read_bytes()))
    validator = jsonschema.Draft7Validator(schema)
    assert [e.message for e in validator.iter_errors(document())] == []
    broken = document()
    broken["operations"]["sendFrames"]["action"] = "sideways"
    assert not validator.is_valid(broken)


def test_the_document_is_wired_together() -> None:
    doc = document("ws://example.test:9000/ws")
    assert doc["asyncapi"] == "3.0.0"
    assert doc["servers"]["wskit"]["host"] == "example.test:9000"
    messages = doc["components"]["messages"]
    for op in doc["operations"].values():
        for ref in op["messages"]:  # every operation's message is in its channel
            name = ref["$ref"].rsplit("/", 1)[1]
            assert name in doc["channels"]["chat"]["messages"] and name in messages
    for msg in messages.values():
        jsonschema.Draft7Validator.check_schema(msg["payload"])


async def test_python_m_wskit_asyncapi_writes_the_document(tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wskit", "asyncapi", "--out", str(out),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, stderr.decode()
    assert json.loads(out.read_text()) == document()
    assert wskit.__version__  # the package the subprocess ran is this one (cwd=ROOT)


def test_registered_frames_are_documented_with_their_schemas() -> None:
    from dataclasses import dataclass

    from pydantic import BaseModel

    @dataclass
    class Typing:
        roomId: str
        active: bool | None = None

    class Read(BaseModel):
        roomId: str
        offset: int

    server = wskit.ChatServer(backplane="none")

    @server.on("app.typing", Typing)
    async def typing(ctx, frame) -> None: ...

    @server.on("app.read", Read, action="read")
    async def read(ctx, frame) -> None: ...

    doc = document(frames=server.frames)
    messages = doc["components"]["messages"]
    for kind in ("app.typing", "app.read"):
        payload = messages[f"client.{kind}"]["payload"]
        jsonschema.Draft7Validator.check_schema(payload)
        assert f"#/channels/chat/messages/client.{kind}" in [
            m["$ref"] for m in doc["operations"]["receiveFrames"]["messages"]]
    typing_schema = jsonschema.Draft7Validator(messages["client.app.typing"]["payload"])
    assert typing_schema.is_valid({"type": "app.typing", "roomId": "r", "ref": 1})
    assert not typing_schema.is_valid({"type": "app.typing", "roomId": 5})
    assert not typing_schema.is_valid({"type": "app.typing"})
    read_schema = jsonschema.Draft7Validator(messages["client.app.read"]["payload"])
    assert read_schema.is_valid({"type": "app.read", "roomId": "r", "offset": 3})
    assert not read_schema.is_valid({"type": "app.read", "roomId": "r", "offset": "3"})
    schema = json.loads(gzip.decompress(
        (ROOT / "tests/data/asyncapi-3.0.0.schema.json.gz").read_bytes()))
    assert jsonschema.Draft7Validator(schema).is_valid(doc)

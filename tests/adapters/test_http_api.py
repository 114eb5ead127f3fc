"""The HTTP API on both frameworks: the key, the routes, the errors, two instances."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import openapi_spec_validator
import pytest

import wskit
from wskit.adapters.openapi import OPENAPI

KEY = "k-" + "s3cret" * 6
AUTH = {"Authorization": f"Bearer {KEY}"}


async def call(srv: wskit.RunningServer, method: str, path: str, *, headers: Any = None,
               body: Any = None, raw: bytes | None = None) -> tuple[int, Any, Any]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    async with aiohttp.ClientSession() as session, session.request(
            method, f"http://{srv.base_url}{path}", headers=headers, data=data) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text.startswith("{") else text, resp.headers


async def test_publish_with_the_key_reaches_every_member_on_two_instances(
        start, clients, backplane_url) -> None:
    a = await start("aiohttp", backplane=backplane_url, api_key=KEY)
    b = await start("fastapi", backplane=backplane_url, api_key=KEY)
    members = [await clients(a, user="alice"), await clients(a, user="ann"),
               await clients(b, user="bob")]
    for c in members:
        await c.join("room")
    offsets = []
    for srv in (a, b):  # through either framework: the same answer
        status, body, _ = await call(srv, "POST", "/api/publish", headers=AUTH, body={
            "roomId": "room", "content": f"via {srv.framework}", "userId": "backend"})
        assert status == 200 and body["roomId"] == "room"
        offsets.append(body["offset"])
    assert offsets == [1, 2]
    for c in members:
        got = [await c.expect("message") for _ in range(2)]
        assert [(m["userId"], m["content"], m["offset"]) for m in got] == [
            ("backend", "via aiohttp", 1), ("backend", "via fastapi", 2)]
    # without the key (or with a wrong one): 401, and nothing is posted
    for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        status, body, resp_headers = await call(a, "POST", "/api/publish", headers=headers,
                                                body={"roomId": "room", "content": "no"})
        assert status == 401 and body["error"]["code"] == "unauthorized"
        assert resp_headers["WWW-Authenticate"].startswith("Bearer")
    assert (await call(b, "GET", "/api/history?roomId=room", headers=AUTH))[1]["offset"] == 2


async def test_the_api_is_off_without_a_key(start, framework) -> None:
    srv = await start(framework)
    for method, path in (("POST", "/api/publish"), ("GET", "/api/presence?roomId=r"),
                         ("GET", "/api/openapi.json")):
        status, body, _ = await call(srv, method, path, headers=AUTH,
                                     body={"roomId": "r", "content": "x"})
        assert status == 404 and "--api-key" in body["error"]["message"]


async def test_presence_history_and_disconnect_over_http(start, clients, framework) -> None:
    srv = await start(framework, api_key=KEY)
    alice, bob = await clients(srv, user="alice"), await clients(srv, user="bob")
    for c in (alice, bob):
        await c.join("lobby")
    for i in range(3):
        await alice.send("lobby", f"m{i}")
    assert (await call(srv, "GET", "/api/presence?roomId=lobby", headers=AUTH))[:2] == (
        200, {"roomId": "lobby", "users": ["alice", "bob"]})
    status, page, _ = await call(srv, "GET", "/api/history?roomId=lobby&limit=2", headers=AUTH)
    assert status == 200 and [m["content"] for m in page["messages"]] == ["m1", "m2"]
    assert page["offset"] == 3 and isinstance(page["epoch"], str)
    status, body, _ = await call(srv, "POST", "/api/disconnect", headers=AUTH,
                                 body={"userId": "bob", "code": 4000, "reason": "bye"})
    assert (status, body) == (200, {"userId": "bob", "closedHere": 1, "instances": 0})
    assert await bob.wait_closed(timeout=5) == 4000 and bob.close_reason == "bye"


BAD = [
    ("POST", "/api/publish", b"{not json", 400, "invalid_json"),
    ("POST", "/api/publish", b"[1, 2]", 400, "not_an_object"),
    ("POST", "/api/publish", b'{"content": "x"}', 400, "missing_field"),
    ("POST", "/api/publish", b'{"roomId": "r", "content": 5}', 400, "wrong_type"),
    ("POST", "/api/publish", b'{"roomId": "no spaces", "content": "x"}', 400, "invalid_value"),
    ("POST", "/api/publish", b'{"roomId": "r", "content": "x", "userId": ""}', 400,
     "invalid_value"),
    ("POST", "/api/publish", b'{"roomId": "r", "content": "' + b"x" * 80_000 + b'"}', 400,
     "too_large"),
    ("POST", "/api/disconnect", b'{"userId": "bob", "code": 1006}', 400, "invalid_value"),
    ("POST", "/api/disconnect", b'{"code": 4000}', 400, "missing_field"),
    ("GET", "/api/presence", b"", 400, "missing_field"),
    ("GET", "/api/history?roomId=r&limit=0", b"", 400, "invalid_value"),
    ("GET", "/api/history?roomId=r&limit=x", b"", 400, "invalid_value"),
    ("GET", "/api/publish", b"", 405, "method_not_allowed"),
    ("POST", "/api/nothing", b"{}", 404, "not_found"),
]


async def test_bad_requests_get_the_same_clear_errors_on_both_frameworks(start) -> None:
    answers = {}
    for framework in ("aiohttp", "fastapi"):
        srv = await start(framework, api_key=KEY)
        got = []
        for method, path, raw, status, code in BAD:
            s, body, _ = await call(srv, method, path, headers=AUTH, raw=raw)
            assert (s, body["error"]["code"]) == (status, code), (framework, path, raw[:40])
            assert body["error"]["message"]
            got.append((s, body))
        answers[framework] = got
    assert answers["aiohttp"] == answers["fastapi"]


async def test_history_off_is_a_409(start, framework) -> None:
    srv = await start(framework, api_key=KEY, history_size=0)
    status, body, _ = await call(srv, "GET", "/api/history?roomId=r", headers=AUTH)
    assert (status, body["error"]["code"]) == (409, "history_unavailable")
    status, body, _ = await call(srv, "POST", "/api/publish", headers=AUTH,
                                 body={"roomId": "r", "content": "x"})
    assert (status, body) == (200, {"roomId": "r", "offset": None})


async def test_both_frameworks_serve_the_same_openapi_document(start) -> None:
    docs = []
    for framework in ("aiohttp", "fastapi"):
        srv = await start(framework, api_key=KEY)
        status, doc, _ = await call(srv, "GET", "/api/openapi.json")  # no key needed
        assert status == 200
        docs.append(doc)
    assert docs[0] == docs[1] == json.loads(json.dumps(OPENAPI))
    assert set(docs[0]["paths"]) == {"/api/publish", "/api/disconnect", "/api/presence",
                                     "/api/history", "/api/inspect"}
    status, html, _ = await call(srv, "GET", "/api/docs")  # FastAPI renders it
    assert status == 200 and "/api/openapi.json" in html


def test_the_openapi_document_is_valid() -> None:
    openapi_spec_validator.validate(OPENAPI)


async def test_a_large_body_is_read_whole(start, clients, framework) -> None:
    # 60 KB arrives in several TCP segments: the adapter must read them all
    srv = await start(framework, api_key=KEY)
    alice = await clients(srv, user="alice")
    await alice.join("room")
    content = "".join(chr(0x41 + i % 26) for i in range(60_000))
    status, body, _ = await call(srv, "POST", "/api/publish", headers=AUTH,
                                 body={"roomId": "room", "content": content})
    assert (status, body["offset"]) == (200, 1)
    assert (await alice.expect("message"))["content"] == content


def test_the_key_is_long_and_never_in_repr() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        wskit.Settings(api_key="short")
    assert KEY not in repr(wskit.Settings(api_key=KEY))


async def test_inspect_reports_rooms_connections_counts_and_closes(
        start, clients, framework) -> None:
    srv = await start(framework, api_key=KEY)
    alice, bob = await clients(srv, user="alice"), await clients(srv, user="bob")
    for c in (alice, bob):
        await c.join("lobby")
    await alice.join("side")
    for i in range(3):
        await alice.send("lobby", f"m{i}")
    for _ in range(3):
        await bob.expect("message")
    await bob.close()
    status, _, _ = await call(srv, "GET", "/api/inspect")
    assert status == 401
    status, snap, _ = await call(srv, "GET", "/api/inspect", headers=AUTH)
    assert status == 200
    assert snap["instance"] == srv.server.instance_id
    assert snap["rooms"] == {"lobby": ["alice"], "side": ["alice"]}
    assert [(c["user"], c["rooms"]) for c in snap["connections"]] == [("alice", ["lobby", "side"])]
    assert snap["connectionCount"] == 1 and snap["connections"][0]["outbox"] == 0
    assert snap["counts"]["posts"] == 3 and snap["counts"]["deliveries"] == 3
    assert snap["counts"]["joins"] == 3 and snap["counts"]["connections"] == 2
    assert snap["closes"] == {"1000": 1}
    assert [(c["user"], c["code"]) for c in snap["recentCloses"]] == [("bob", 1000)]
    assert "token" not in json.dumps(snap)  # identities, never credentials or contents
    assert "m0" not in json.dumps(snap)

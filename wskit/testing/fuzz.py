"""A seeded fuzzer of wskit's wire protocol, over real sockets.

:func:`frames` yields ``(kind, payload)`` pairs from a seed: valid frames,
mutated ones, wrong types, odd Unicode, deep nesting, huge numbers, invalid
UTF-8, binary and oversized frames. :func:`run` sends them to a server through
one connection and checks, after every frame, that a ``ping`` is answered (the
connection is alive and in order) with exactly the replies the parser promises,
while two bystanders chat in a room of their own. Frames that must close the
connection (binary: 1003, invalid UTF-8: 1007, oversized: 1009) are checked
for that code, and the fuzzer reconnects.

Used by the test suite (a few thousand frames) and on demand
(``WSKIT_FUZZ_FRAMES=10000 pytest tests/testing/test_fuzz.py -s``).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..client.aio import Client
from ..core import protocol
from ..exceptions import ConnectionClosed, ProtocolError

__all__ = ["frames", "run", "FuzzReport", "expected_replies"]

Payload = str | bytes

_ODD = ["\u0000", "\u200b", "\u202e", "\ufeff", "\U0001f600", "\uffff", "e\u0301", "\\ud800",
        "\\udfff", "\\u0000", "\\ud83d\\ude00", "\"", "\\", "\n", "\u2028"]
_VALUES: list[Any] = [None, True, False, 0, -1, 2**53, 2**64, 1e308, -0.0, "", "x" * 300, [],
                      {}, [1, [2, [3]]], {"a": {"b": None}}]
_ROOMS = ["f1", "f2", "lobby-x", "a b", "*", "", "r" * 70]


def _valid(rnd: random.Random) -> dict[str, Any]:
    """A valid request, built by the protocol's own builders (the draws' order is the seed's)."""
    kind = rnd.choice(["join", "leave", "message", "direct", "ping", "pong"])
    room = rnd.choice(_ROOMS[:3]) if kind in ("join", "leave", "message") else ""
    content = ("".join(rnd.choice("abc ") for _ in range(rnd.randrange(20)))
               if kind in ("message", "direct") else "")
    to = rnd.choice(["fuzzer", "nobody", "alice"]) if kind == "direct" else ""
    ref: protocol.Ref = None
    if rnd.random() < 0.7:
        refs: list[protocol.Ref] = [rnd.randrange(10**6), f"x{rnd.randrange(99)}"]
        ref = rnd.choice(refs)
    if kind == "join":
        return protocol.join_request(room, ref=ref)
    if kind == "leave":
        return protocol.leave_request(room, ref=ref)
    if kind == "message":
        return protocol.post_request(room, content, ref=ref)
    if kind == "direct":
        return protocol.direct_request(to, content, ref=ref)
    if kind == "ping":
        return protocol.ping_request(ref)
    return protocol.pong_request(ref)


def _odd_text(rnd: random.Random) -> str:
    return "".join(rnd.choice(_ODD) for _ in range(rnd.randrange(1, 6)))


def frames(seed: int, count: int, max_size: int) -> Iterator[tuple[str, Payload]]:
    """``count`` fuzz frames from ``seed``: ``(kind, payload)``."""
    rnd = random.Random(seed)
    for _ in range(count):
        kind = rnd.choices(
            ["valid", "mutated", "wrong_type", "odd_unicode", "deep", "huge_number",
             "garbage", "invalid_utf8", "binary", "oversized"],
            weights=[20, 20, 15, 12, 8, 5, 10, 3, 3, 2])[0]
        frame = _valid(rnd)
        if kind == "valid":
            yield kind, json.dumps(frame)
        elif kind == "mutated":
            text = list(json.dumps(frame))
            for _ in range(rnd.randrange(1, 4)):
                i = rnd.randrange(len(text))
                op = rnd.randrange(3)
                if op == 0:
                    del text[i]
                elif op == 1:
                    text.insert(i, rnd.choice('{}[]",:\\0aé\u0000'))
                else:
                    text[i] = rnd.choice('{}[]",:\\0a')
            yield kind, "".join(text)
        elif kind == "wrong_type":
            key = rnd.choice(["type", "roomId", "content", "to", "ref"])
            frame[key] = rnd.choice(_VALUES)
            yield kind, json.dumps(frame)
        elif kind == "odd_unicode":
            key = rnd.choice(["roomId", "content", "to", "ref", "type"])
            plain = json.dumps(frame, ensure_ascii=False)
            odd = json.dumps(_odd_text(rnd), ensure_ascii=False).replace("\\\\u", "\\u")
            yield kind, plain[:-1] + f', "{key}": {odd}' + "}"
        elif kind == "deep":
            opener = rnd.choice(["[", '{"a":', '{"type":'])
            closer = {"[": "]", '{"a":': "}", '{"type":': "}"}[opener]
            fits = (max_size - 1) // (len(opener) + len(closer))  # under the size limit
            depth = rnd.randrange(100, min(40_000, fits))
            yield kind, opener * depth + "1" + closer * rnd.choice([0, depth])
        elif kind == "huge_number":
            digits = rnd.choice([20, 400, 4300, 5000, 20_000])
            num = rnd.choice(["1" * digits, "1e" + "9" * 5, "-" + "9" * digits, "1." + "0" * digits])
            # spliced by hand: a number no JSON encoder writes (thousands of digits, 1e99999)
            yield kind, protocol.encode(protocol.ping_request())[:-1] + ',"ref":' + num + "}"
        elif kind == "garbage":
            yield kind, "".join(chr(rnd.randrange(32, 0x3000)) for _ in range(rnd.randrange(1, 60)))
        elif kind == "invalid_utf8":
            good = json.dumps(frame).encode()
            i = rnd.randrange(len(good))
            yield kind, good[:i] + rnd.choice([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82"]) + good[i:]
        elif kind == "binary":
            yield kind, json.dumps(frame).encode()
        else:
            yield kind, protocol.encode(protocol.post_request("f1", "x" * (max_size + 10)))


#: the close each closing kind must earn
CLOSES = {"invalid_utf8": protocol.CloseCode.INVALID_DATA,
          "binary": protocol.CloseCode.UNSUPPORTED_DATA,
          "oversized": protocol.CloseCode.MESSAGE_TOO_BIG}


@dataclass
class FuzzReport:
    frames: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    replies: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)
    bystander_messages: int = 0


def expected_replies(text: str) -> int:
    """How many replies the protocol promises for one text frame: 1, or 0 for a pong."""
    try:
        request = protocol.parse(text)
    except ProtocolError:
        return 1
    return 0 if isinstance(request, protocol.Pong) else 1


async def run(server: Any, seed: int, count: int, chat_every: int = 50) -> FuzzReport:
    """Fuzz ``server`` (a handle from :func:`wskit.serve`); AssertionError on a fault."""
    report = FuzzReport()
    max_size = server.server.settings.max_message_size
    alice, bob = Client(server, user="alice"), Client(server, user="bob")
    await alice.connect()
    await bob.connect()
    fuzzer = await Client(server, user="fuzzer").connect()
    try:
        await alice.join("calm")
        await bob.join("calm")
        for i, (kind, payload) in enumerate(frames(seed, count, max_size)):
            if i % chat_every == 0:  # the bystanders chat throughout
                await alice.send("calm", f"m{i}")
                got = await bob.receive(timeout=10)
                assert got.get("content") == f"m{i}", got
                report.bystander_messages += 1
            report.frames += 1
            report.kinds[kind] += 1
            if kind in CLOSES:
                if isinstance(payload, bytes) and kind == "invalid_utf8":
                    await fuzzer.send_text_bytes(payload)
                else:
                    await fuzzer.send_raw(payload)
                code = await fuzzer.wait_closed()
                report.closes[code or 0] += 1
                assert code == CLOSES[kind], (i, kind, code, payload[:80])
                await fuzzer.close()
                fuzzer = await Client(server, user="fuzzer").connect()
                continue
            assert isinstance(payload, str)
            await fuzzer.send_raw(payload)
            await fuzzer.send_raw(protocol.ping_request(f"fence{i}"))
            replies = []
            while True:
                try:
                    frame = await fuzzer.receive(timeout=10)
                except ConnectionClosed as exc:
                    raise AssertionError(f"frame {i} ({kind}) closed the connection with "
                                         f"{exc.code}: {payload[:120]!r}") from None
                if frame.get("type") == "pong" and frame.get("ref") == f"fence{i}":
                    break
                if frame.get("type") not in ("message", "direct"):
                    replies.append(frame)
            for r in replies:
                report.replies[r.get("code") or r["type"]] += 1
            expected = expected_replies(payload)
            assert len(replies) == expected, (i, kind, payload[:120], replies)
    finally:
        for c in (alice, bob, fuzzer):
            await c.close()
    return report

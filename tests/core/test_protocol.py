"""The wire protocol, without sockets."""

from __future__ import annotations

import json

import pytest

from wskit.core import protocol
from wskit.core.protocol import CloseCode, Direct, Join, Leave, Ping, Pong, Post
from wskit.exceptions import ProtocolError


@pytest.mark.parametrize("text, expected", [
    ('{"type":"join","roomId":"lobby"}', Join("lobby")),
    ('{"type":"leave","roomId":"a.b:c-d_e"}', Leave("a.b:c-d_e")),
    ('{"type":"message","roomId":"r","content":"hé","ref":7}', Post("r", "hé", 7)),
    ('{"type":"direct","to":"bob","content":"","ref":"x"}', Direct("bob", "", "x")),
    ('{"type":"pong"}', Pong()),
    ('{"type":"ping","ref":"p"}', Ping("p")),
])
def test_parse_valid(text: str, expected: object) -> None:
    assert protocol.parse(text) == expected


@pytest.mark.parametrize("text, code, words", [
    ("{not json", "invalid_json", "not valid JSON"),
    ("", "invalid_json", "not valid JSON"),
    ("[1, 2]", "not_an_object", "got an array"),
    ('"join"', "not_an_object", "got a string"),
    ("{}", "missing_field", "'type'"),
    ('{"type": 3}', "wrong_type", "'type' must be a string, got an integer"),
    ('{"type": "dance"}', "unknown_type", "'dance'"),
    ('{"type": "join"}', "missing_field", "'roomId'"),
    ('{"type": "join", "roomId": 5}', "wrong_type", "'roomId' must be a string, got an integer"),
    ('{"type": "join", "roomId": "has space"}', "invalid_value", "'roomId'"),
    ('{"type": "join", "roomId": ""}', "invalid_value", "'roomId'"),
    ('{"type": "join", "roomId": "' + "x" * 65 + '"}', "invalid_value", "'roomId'"),
    ('{"type": "message", "roomId": "r"}', "missing_field", "'content'"),
    ('{"type": "message", "roomId": "r", "content": null}', "wrong_type", "got null"),
    ('{"type": "message", "roomId": "r", "content": {"a": 1}}', "wrong_type", "got an object"),
    ('{"type": "direct", "content": "x"}', "missing_field", "'to'"),
    ('{"type": "direct", "to": "", "content": "x"}', "invalid_value", "'to'"),
    ('{"type": "pong", "ref": true}', "wrong_type", "'ref'"),
    ('{"type": "pong", "ref": [1]}', "wrong_type", "'ref'"),
])
def test_parse_invalid_names_the_fault(text: str, code: str, words: str) -> None:
    with pytest.raises(ProtocolError) as info:
        protocol.parse(text)
    assert info.value.code == code
    assert code in protocol.ERROR_CODES
    assert words in info.value.message


def test_error_and_reply_frames_round_trip() -> None:
    err = json.loads(protocol.error_frame("not_joined", "nope", ref=3))
    assert err == {"type": "error", "code": "not_joined", "message": "nope", "ref": 3}
    ok = json.loads(protocol.reply("joined", None, roomId="r"))
    assert ok == {"type": "joined", "roomId": "r"}
    assert protocol.encode({"c": "é"}) == '{"c":"é"}'


def test_close_codes_are_in_the_ranges_the_rfc_allows() -> None:
    for code in CloseCode:
        assert 1000 <= code <= 1015 or 4000 <= code <= 4999
    assert CloseCode.UNAUTHORIZED == 4001  # what the seed uses, kept


def test_close_reason_fits_a_control_frame() -> None:
    reason = protocol.close_reason("é" * 200)
    assert len(reason.encode()) <= 123
    assert protocol.close_reason("short") == "short"

"""The wire protocol, without sockets."""

from __future__ import annotations

import json
import typing
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wskit.core import protocol
from wskit.core.protocol import (
    CloseCode,
    Direct,
    History,
    Join,
    Leave,
    Ping,
    Pong,
    Post,
    PresenceQuery,
    Refresh,
)
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


# -- the request builders are parse()'s inverse ------------------------------------

# room ids as a client would send them: NFKC already (the parser normalises, so "ℓ" comes
# back as "l", which is the parser's rule, not a builder's fault)
_rooms = st.from_regex(protocol.ROOM_PATTERN, fullmatch=True).filter(
    lambda r: unicodedata.normalize("NFKC", r) == r)
_text = st.text().filter(lambda s: s == s.encode("utf-8", "ignore").decode("utf-8"))
_refs = st.none() | st.integers(-(2**53 - 1), 2**53 - 1) | st.text(max_size=64).filter(
    lambda s: s == s.encode("utf-8", "ignore").decode("utf-8"))
_since = st.none() | st.builds(protocol.Since, st.integers(0, 2**53 - 1),
                               st.text(min_size=1, max_size=64).filter(
                                   lambda s: s == s.encode("utf-8", "ignore").decode("utf-8")))
_users = st.text(min_size=1, max_size=128).filter(
    lambda s: s == s.encode("utf-8", "ignore").decode("utf-8"))


@given(st.one_of(
    st.builds(lambda r, s, f: (protocol.join_request(r, since=s, ref=f), Join(r, f, s)),
              _rooms, _since, _refs),
    st.builds(lambda r, f: (protocol.leave_request(r, ref=f), Leave(r, f)), _rooms, _refs),
    st.builds(lambda r, c, f: (protocol.post_request(r, c, ref=f), Post(r, c, f)),
              _rooms, _text, _refs),
    st.builds(lambda t, c, f: (protocol.direct_request(t, c, ref=f), Direct(t, c, f)),
              _users, _text, _refs),
    st.builds(lambda r, n, f: (protocol.history_request(r, limit=n, ref=f), History(r, n, f)),
              _rooms, st.none() | st.integers(1, 1000), _refs),
    st.builds(lambda r, f: (protocol.presence_request(r, ref=f), PresenceQuery(r, f)),
              _rooms, _refs),
    st.builds(lambda f: (protocol.ping_request(f), Ping(f)), _refs),
    st.builds(lambda f: (protocol.pong_request(f), Pong(f)), _refs),
    st.builds(lambda t, f: (protocol.refresh_request(t, ref=f), Refresh(t, f)), _users, _refs),
))
def test_every_request_builder_parses_back_to_its_request(case: tuple[dict, object]) -> None:
    frame, request = case
    assert protocol.parse(protocol.encode(frame)) == request
    assert protocol.parse(json.dumps(frame)) == request  # the client's spelling too


def test_builders_cover_every_request_type() -> None:
    builders = {name for name in protocol.__all__ if name.endswith("_request")}
    kinds = {protocol.parse(protocol.encode(getattr(protocol, name)(
        *(["r", "c"][:_arity(name)])))).__class__ for name in builders}
    assert kinds == set(typing.get_args(protocol.Request))


def _arity(name: str) -> int:
    return {"post_request": 2, "direct_request": 2, "ping_request": 0, "pong_request": 0}.get(
        name, 1)


def test_1006_is_never_sent_by_the_server() -> None:
    """RFC 6455 7.4.1: 1006 must not be set as a status code in a close frame."""
    import ast
    from pathlib import Path

    import wskit

    root = Path(wskit.__file__).parent
    for path in [*root.joinpath("server").rglob("*.py"), *root.joinpath("adapters").rglob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            assert not (isinstance(node, ast.Attribute) and node.attr == "ABNORMAL_CLOSURE"), path
            assert not (isinstance(node, ast.Constant) and node.value == 1006), path


@pytest.mark.parametrize("room", ["lobby\u1160", "lobby\u115f", "lob\u034fby", "\u3164lobby"])
def test_room_ids_that_render_as_another_are_refused(room: str) -> None:
    # letters and marks that show nothing (wskit.core.text): "lobby" twice, otherwise
    with pytest.raises(ProtocolError) as err:
        protocol.parse(json.dumps({"type": "join", "roomId": room}))
    assert err.value.code == "invalid_value"

"""Properties of hub.protocol.codec: every Struct round-trips, and no input makes decode_command misbehave."""

from __future__ import annotations

import sys
from typing import Any

import msgspec
import msgspec.inspect
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hub.protocol import commands as c
from hub.protocol.codec import (
    FRAME_DEPTH,
    decode_command,
    decode_event,
    decode_frame,
    decode_json,
    encode,
    to_builtins,
)
from hub.protocol.errors import Code, HubError
from tests.protocol.strategies import (
    COMMAND_TYPES,
    EVENT_TYPES,
    FRAME_TYPES,
    commands,
    events,
    frames,
    json_objects,
    json_scalars,
    json_values,
    struct_of,
)

DECODE_CODES = {
    Code.BAD_FRAME,
    Code.UNKNOWN_OP,
    Code.TOO_LARGE,
    Code.BAD_REQUEST,
}  # bad_request: out of range
OPS = [cls.__struct_config__.tag for cls in COMMAND_TYPES]
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decodes_or_refuses(data: bytes | str) -> Any:
    """decode_command's whole contract: a Command, or a HubError with one of the decode codes."""
    try:
        cmd = decode_command(data)
    except HubError as exc:
        assert exc.code in DECODE_CODES, exc
        assert isinstance(exc.detail, dict)
        return exc
    assert isinstance(cmd, COMMAND_TYPES)
    return cmd


# --------------------------------------------------------------------------- round trips


@FAST
@given(commands)
def test_every_command_round_trips(cmd: Any) -> None:
    """encode → decode_command gives back an equal Command."""
    assert decode_command(encode(cmd)) == cmd


@FAST
@given(events)
def test_every_event_round_trips(event: Any) -> None:
    """encode → decode_event gives back an equal Event (what the log relies on)."""
    assert decode_event(encode(event)) == event


@FAST
@given(frames)
def test_every_frame_round_trips(frame: Any) -> None:
    """encode → decode_frame gives back an equal Frame (what clients rely on)."""
    assert decode_frame(encode(frame)) == frame


@pytest.mark.parametrize("cls", COMMAND_TYPES + EVENT_TYPES + FRAME_TYPES, ids=lambda cls: cls.__name__)
def test_strategies_cover_every_type(cls: type[msgspec.Struct]) -> None:
    """Every member of the Command, Event and Frame unions has a strategy that builds it."""

    @settings(max_examples=5, deadline=None)
    @given(struct_of(cls))
    def check(value: Any) -> None:
        assert type(value) is cls

    check()


def test_command_wire_names() -> None:
    """Commands tag on `op`, events and frames on `type`; `for` and `from` are the wire names."""
    wire = decode_json(encode(c.Wait(id=3, waiter="w", for_="bob")))
    assert wire["op"] == "wait" and wire["for"] == "bob" and "for_" not in wire
    from hub.protocol.events import HubStarted

    assert decode_json(encode(HubStarted(room="", at=1.0))) == {"type": "HubStarted", "room": "", "at": 1.0}


def test_to_builtins_decodes_raw_bodies() -> None:
    """to_builtins turns a Struct into plain data, Raw bodies included."""
    cmd = c.Send(name="a", to=("b",), body=msgspec.Raw(b'{"k":[1,2]}'))
    assert to_builtins(cmd)["body"] == {"k": [1, 2]}


# --------------------------------------------------------------------------- hostile input


@FAST
@given(st.binary(max_size=200))
@example(b"")
@example(b"\xff\xfe")
@example(b"null")
@example(b"[]")
@example(b'{"op": null}')
@example(b'{"op": "send", "name": "a", "to": ["b"], "body": ' + b"[" * 5000 + b"]" * 5000 + b"}")
@example(b'{"op":"join","op":"nope","name":"a"}')
@example(b'{"op":"nope","x":' + b"[" * 2000 + b"]" * 2000 + b"}")
@example(b'{"op":"nope","x":' + b"[" * 2000)
@example(b'{"op":"join","name":"a","id":' + b"9" * 400 + b"}")
def test_arbitrary_bytes_decode_or_are_refused(data: bytes) -> None:
    """Arbitrary bytes decode to a Command or raise HubError with a decode code, nothing else."""
    decodes_or_refuses(data)


@FAST
@given(st.text(max_size=100))
@example("\ud800")
def test_arbitrary_text_decodes_or_is_refused(data: str) -> None:
    """Text frames (str, even with lone surrogates) obey the same contract as bytes."""
    decodes_or_refuses(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_objects, st.sampled_from([*OPS, "nope", "", 5, None]))
def test_arbitrary_json_objects_decode_or_are_refused(obj: dict[str, Any], op: Any) -> None:
    """Any JSON object, with a known, unknown or mistyped `op`, decodes or is refused with a decode code."""
    decodes_or_refuses(msgspec.json.encode(obj))
    decodes_or_refuses(msgspec.json.encode({**obj, "op": op}))


@FAST
@given(commands, st.data())
def test_a_broken_field_is_named_in_the_detail(cmd: Any, data: st.DataObject) -> None:
    """Replacing one field of a valid command with a wrong value fails with a path that starts at that field."""
    wire = decode_json(encode(cmd))
    fields = [k for k in wire if k != "op"]
    if not fields:
        return
    key = data.draw(st.sampled_from(fields))
    value = data.draw(json_values)
    result = decodes_or_refuses(msgspec.json.encode({**wire, key: value}))
    if isinstance(result, HubError):
        assert result.code in (Code.BAD_FRAME, Code.BAD_REQUEST)
        path = result.detail["path"]
        assert path == f"$.{key}" or path.startswith((f"$.{key}[", f"$.{key}.")), (key, result.detail)


@FAST
@given(st.one_of(json_scalars, st.lists(json_values, max_size=3)))
def test_a_frame_that_is_not_an_object_is_bad_frame(value: Any) -> None:
    """A JSON value that is not an object is bad_frame at `$`."""
    err = decodes_or_refuses(msgspec.json.encode(value))
    assert isinstance(err, HubError) and err.code == Code.BAD_FRAME


@pytest.mark.parametrize(
    ("data", "path"),
    [
        (b'{"op":"send","name":"a","to":[1]}', "$.to[0]"),
        (b'{"op":"send","name":"a","to":["b", "c", {}]}', "$.to[2]"),
        (b'{"op":"send","name":"a"}', "$.to"),
        (b'{"op":"send","name":"a","to":["b"],"extra":1}', "$.extra"),
        (b'{"op":"heartbeat","name":"a","status":"asleep"}', "$.status"),
        (b'{"op":"join","name":"a","id":1.5}', "$.id"),
        (b'{"name":"a"}', "$.op"),
        (b'{"op":7}', "$.op"),
        (b"[]", "$"),
    ],
)
def test_bad_frame_detail_names_the_field_path(data: bytes, path: str) -> None:
    """The bad_frame detail carries msgspec's reason and the JSON path of the bad field."""
    err = decodes_or_refuses(data)
    assert isinstance(err, HubError) and err.code == Code.BAD_FRAME
    assert err.detail["path"] == path
    assert err.detail["reason"] and "Traceback" not in err.message


def test_unknown_op_names_the_op() -> None:
    """An op naming no command is unknown_op with detail op."""
    err = decodes_or_refuses(b'{"op":"task.explode","id":4}')
    assert isinstance(err, HubError) and err.code == Code.UNKNOWN_OP and err.detail == {"op": "task.explode"}


def test_an_unknown_op_in_a_frame_too_deep_to_read_is_bad_frame() -> None:
    """An unknown op followed by a 2,000-deep array is bad_frame (too deep), not a RecursionError; the same
    frame cut short is bad_frame too (not JSON), never unknown_op."""
    for data in (b'{"op":"nope","x":' + b"[" * 2000 + b"]" * 2000 + b"}", b'{"op":"nope"'):
        err = decodes_or_refuses(data)
        assert isinstance(err, HubError) and err.code == Code.BAD_FRAME, err


@pytest.mark.parametrize("limit", [1_000, 50_000])
def test_a_frame_gets_the_same_code_whatever_the_recursion_limit(limit: int) -> None:
    """Past FRAME_DEPTH a frame is bad_frame, up to it it is read: the code never depends on how deep the
    interpreter lets the decoder recurse (an unknown op, an out-of-range id, a deep value or body)."""
    nest = lambda n: b"[" * n + b"]" * n  # noqa: E731
    cases = {
        b'{"op":"nope","x":' + nest(FRAME_DEPTH - 1) + b"}": Code.UNKNOWN_OP,  # 128 levels with the frame's
        b'{"op":"nope","x":' + nest(FRAME_DEPTH) + b"}": Code.BAD_FRAME,
        b'{"op":"nope","x":' + nest(1500) + b"}": Code.BAD_FRAME,
        b'{"op":"state.set","name":"a","key":"k","value":'
        + nest(900)
        + b',"id":9223372036854775808}': Code.BAD_FRAME,
        b'{"op":"state.set","name":"a","key":"k","value":'
        + nest(100)
        + b',"id":9223372036854775808}': Code.BAD_REQUEST,
        b'{"op":"send","name":"a","to":["b"],"body":' + nest(979) + b"}": Code.BAD_FRAME,
        b'{"op":"send","name":"a","to":["b"],"body":"' + b"[" * 979 + b'"}': None,  # brackets in a string
        b'{"op":"send","name":"a","to":["b"],"body":' + nest(FRAME_DEPTH - 1) + b"}": None,
    }
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        for data, code in cases.items():
            got = decodes_or_refuses(data)
            assert (got.code if isinstance(got, HubError) else None) == code, (data[:60], got)
            got = decodes_or_refuses(data.decode())  # a text frame
            assert (got.code if isinstance(got, HubError) else None) == code, (data[:60], got)
    finally:
        sys.setrecursionlimit(before)


def _int_fields() -> list[tuple[str, str]]:
    """(op, field) of every integer field of every command, optional ones included."""
    out = []
    for cls in COMMAND_TYPES:
        info = msgspec.inspect.type_info(cls)
        assert isinstance(info, msgspec.inspect.StructType)
        for field in info.fields:
            types = field.type.types if isinstance(field.type, msgspec.inspect.UnionType) else (field.type,)
            if any(isinstance(t, msgspec.inspect.IntType) for t in types):
                out.append((str(cls.__struct_config__.tag), field.encode_name))
    return out


@pytest.mark.parametrize(("op", "field"), _int_fields())
@pytest.mark.parametrize("number", [b"9223372036854775808", b"-9223372036854775809", b"1" + b"0" * 400])
def test_every_integer_field_is_signed_64_bit(op: str, field: str, number: bytes) -> None:
    """Every integer field of every command refuses a value past signed 64 bits with bad_request naming the
    field, before anything decides (the log, the snapshot and every client keep 64-bit integers)."""
    data = b'{"op":"%s","%s":%s}' % (op.encode(), field.encode(), number)
    err = decodes_or_refuses(data)
    assert isinstance(err, HubError) and err.code == Code.BAD_REQUEST, err
    assert err.detail["field"] == field and err.detail["reason"] == "range"
    edge = b"9223372036854775807" if number[:1] != b"-" else b"-9223372036854775808"
    fine = decodes_or_refuses(b'{"op":"%s","%s":%s}' % (op.encode(), field.encode(), edge))
    assert not (isinstance(fine, HubError) and fine.detail.get("field") == field), fine


def test_fence_epochs_and_batch_versions_are_64_bit() -> None:
    """Integers inside fields (a fence's epochs, a batch write's if_version) are bounded too."""
    for data in (
        b'{"op":"send","name":"a","to":["b"],"fence":{"w":9223372036854775808}}',
        b'{"op":"state.batch","name":"a","writes":[{"key":"k","if_version":-9223372036854775809}]}',
    ):
        err = decodes_or_refuses(data)
        assert (
            isinstance(err, HubError)
            and err.code == Code.BAD_REQUEST
            and err.detail["path"].startswith(("$.fence", "$.writes[0]"))
        )


def test_a_number_past_a_double_is_bad_request() -> None:
    """1e400 (no double holds it) in any number field is bad_request naming the field, not bad_frame."""
    err = decodes_or_refuses(b'{"op":"state.set","name":"a","key":"k","value":1e400}')
    assert isinstance(err, HubError) and err.code == Code.BAD_REQUEST and err.detail["field"] == "value"
    err = decodes_or_refuses(b'{"op":"claim","name":"a","work":"w","ttl":-1e400}')
    assert isinstance(err, HubError) and err.code == Code.BAD_REQUEST and err.detail["field"] == "ttl"


def test_not_json_is_bad_frame() -> None:
    """Bytes that are not JSON are bad_frame with a reason."""
    err = decodes_or_refuses(b"{nope")
    assert isinstance(err, HubError) and err.code == Code.BAD_FRAME and err.detail["reason"]


def test_deeply_nested_body_is_bad_frame() -> None:
    """A body nested past the decoder's recursion limit is bad_frame, not a RecursionError."""
    deep = b"[" * 100_000 + b"]" * 100_000
    err = decodes_or_refuses(b'{"op":"send","name":"a","to":["b"],"body":' + deep + b"}")
    assert isinstance(err, HubError) and err.code == Code.BAD_FRAME


def test_hub_error_survives_pickling() -> None:
    """HubError keeps code, message and detail through pickle (it crosses threads and processes)."""
    import pickle

    err = pickle.loads(pickle.dumps(HubError(Code.CONFLICT, "stale", {"current": 3})))
    assert (err.code, err.message, err.detail) == (Code.CONFLICT, "stale", {"current": 3})
    assert HubError("from_the_future", "x").code == "from_the_future"

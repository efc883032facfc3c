"""Hypothesis strategies for every Command, Event and Frame, built from the Structs' own type info.

Deriving them from `msgspec.inspect` means a new command, event or frame is covered the day it is added.
Values are chosen to survive a JSON round trip exactly: finite floats, 64-bit ints, lists (not tuples) and
string keys inside `Any`, and `Raw` bodies that are compact JSON.
"""

from __future__ import annotations

import typing
from functools import cache
from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import strategies as st

from hub.protocol.commands import Command
from hub.protocol.events import Event
from hub.protocol.frames import Frame

__all__ = [
    "COMMAND_TYPES",
    "EVENT_TYPES",
    "FRAME_TYPES",
    "commands",
    "events",
    "frames",
    "json_objects",
    "json_scalars",
    "json_values",
    "raw_json",
    "struct_of",
]

COMMAND_TYPES: tuple[type[msgspec.Struct], ...] = typing.get_args(Command)
EVENT_TYPES: tuple[type[msgspec.Struct], ...] = typing.get_args(Event)
FRAME_TYPES: tuple[type[msgspec.Struct], ...] = typing.get_args(Frame)

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
TEXT = st.text(max_size=20)

json_scalars = st.none() | st.booleans() | INT64 | FLOATS | TEXT
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
json_objects: st.SearchStrategy[dict[str, Any]] = st.dictionaries(TEXT, json_values, max_size=6)
raw_json: st.SearchStrategy[msgspec.Raw] = json_values.map(lambda v: msgspec.Raw(msgspec.json.encode(v)))


def _for(t: mi.Type) -> st.SearchStrategy[Any]:
    """A strategy for one msgspec type (as `msgspec.inspect` describes it)."""
    if isinstance(t, mi.StrType):
        return st.text(min_size=t.min_length or 0, max_size=t.max_length or 20)
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.IntType):
        low = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else -(2**63))
        high = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else 2**63 - 1)
        return st.integers(min_value=low, max_value=high)
    if isinstance(t, mi.FloatType):
        if t.ge is None and t.le is None:
            return FLOATS
        return st.floats(min_value=t.ge, max_value=t.le, allow_nan=False, allow_infinity=False)
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.EnumType):
        return st.sampled_from(list(t.cls))
    if isinstance(t, mi.RawType):
        return raw_json
    if isinstance(t, mi.AnyType):
        return json_values
    if isinstance(t, mi.UnionType):
        return st.one_of([_for(member) for member in t.types])
    if isinstance(t, mi.VarTupleType):
        return st.lists(_for(t.item_type), max_size=4).map(tuple)
    if isinstance(t, mi.TupleType):
        return st.tuples(*[_for(item) for item in t.item_types])
    if isinstance(t, mi.ListType):
        return st.lists(_for(t.item_type), max_size=4)
    if isinstance(t, mi.DictType):
        return st.dictionaries(_for(t.key_type), _for(t.value_type), max_size=4)
    if isinstance(t, mi.StructType):
        return struct_of(t.cls)
    raise NotImplementedError(f"no strategy for {t!r}: teach tests/protocol/strategies.py")


@cache
def struct_of(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    """Instances of `cls`: every required field drawn, each optional one either drawn or left default."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    required = {f.name: _for(f.type) for f in info.fields if f.required}
    optional = {f.name: _for(f.type) for f in info.fields if not f.required}
    return st.fixed_dictionaries(required, optional=optional).map(lambda kw: cls(**kw))


commands: st.SearchStrategy[Any] = st.one_of([struct_of(cls) for cls in COMMAND_TYPES])
events: st.SearchStrategy[Any] = st.one_of([struct_of(cls) for cls in EVENT_TYPES])
frames: st.SearchStrategy[Any] = st.one_of([struct_of(cls) for cls in FRAME_TYPES])

"""Tests for hub.core.rooms: room names, resolving targets, and isolation between rooms."""

from __future__ import annotations

from typing import Any

import pytest

from hub.core.agents import Roster
from hub.core.feed import Feed
from hub.core.rooms import check_room, split_targets
from hub.protocol import commands as c
from hub.protocol.errors import Code, HubError

Script = Any  # the fixture's class lives in tests/core/conftest.py


@pytest.mark.parametrize(
    ("targets", "split"),
    [
        (("bob",), {"here": ("bob",)}),
        (("bob", "carol"), {"here": ("bob", "carol")}),
        (("bob", "bob"), {"here": ("bob",)}),
        (("*",), {"here": ("*",)}),
        (("here/*",), {"here": ("*",)}),
        (("here/bob",), {"here": ("bob",)}),
        (("ops/*",), {"ops": ("*",)}),
        (("ops/dana", "bob"), {"ops": ("dana",), "here": ("bob",)}),
        (("all",), {"here": ("all",), "ops": ("all",), "zed": ("all",)}),
        (("all", "all"), {"here": ("all",), "ops": ("all",), "zed": ("all",)}),
        (("all", "ops/dana"), {"here": ("all",), "ops": ("all", "dana"), "zed": ("all",)}),
    ],
)
def test_split_targets(targets: tuple[str, ...], split: dict[str, tuple[str, ...]]) -> None:
    """Targets are grouped by the room whose feed receives them, each relative to that room."""
    assert split_targets("here", targets, ["zed", "ops", "here"]) == split  # type: ignore[arg-type]


def test_split_targets_all_is_in_room_name_order() -> None:
    """`all` lists rooms in name order, whatever order the hub created them in."""
    assert list(split_targets("m", ("all",), ["z", "a", "q"])) == ["a", "m", "q", "z"]  # type: ignore[arg-type]


@pytest.mark.parametrize("target", ["", "/", "a/b/c", "ops/", "ops/bad name", "bad room/x", "x,y", "a/**"])
def test_split_targets_refuses_bad_targets(target: str) -> None:
    """Anything but name, room/*, room/name or all is bad_request."""
    with pytest.raises(HubError) as info:
        split_targets("here", (target,), [])  # type: ignore[arg-type]
    assert info.value.code == Code.BAD_REQUEST


def test_split_targets_needs_a_target() -> None:
    """An empty target list is bad_request field=to."""
    with pytest.raises(HubError) as info:
        split_targets("here", (), [])  # type: ignore[arg-type]
    assert info.value.code == Code.BAD_REQUEST and info.value.detail["field"] == "to"


@pytest.mark.parametrize("name", ["default", "a", "A-1", "x.y_z", "9", "r" * 128])
def test_good_room_names(name: str) -> None:
    """Letters, digits, '.', '_' and '-', starting with a letter or digit, up to 128 characters."""
    assert check_room(name) == name


def test_rooms_are_isolated(script: Script) -> None:
    """The same name joins two rooms as two agents; feeds, claims and presence stay apart."""
    script.join("alice", "bob", room="a")
    script.join("alice", room="b")
    script.do("alice", c.Send(room="a", name="alice", to=("bob",)))
    script.do("bob", c.ClaimMessage(room="a", name="bob", seq=1))
    script.do("alice", c.Heartbeat(room="b", name="alice", status="busy"))
    a, b = script.machine.world.rooms["a"], script.machine.world.rooms["b"]
    assert a.part(Feed).seq == 1 and b.part(Feed).seq == 0 and b.part(Feed).claimed == {}
    assert a.part(Roster).agents["alice"].status == "active"
    assert b.part(Roster).agents["alice"].status == "busy"
    err = script.refused("alice", c.ClaimMessage(room="b", name="alice", seq=1))
    assert err.code == Code.NOT_FOUND


def test_wait_in_a_room_that_does_not_exist_is_refused_and_makes_none(script: Script) -> None:
    """A request never creates a room: a wait in one nobody made is not_found, and the state stays a pure fold."""
    err = script.refused(None, c.Wait(room="late", waiter="w", for_="bob"), session=7)
    assert err.code == Code.NOT_FOUND and "late" not in script.machine.world.rooms
    script.join("alice", room="early")
    script.join("bob", room="late")
    # the Script fixture's teardown folds the events into a fresh Machine and compares snapshots

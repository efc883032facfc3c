"""Claim scopes: normalize path/dir/glob entries and decide exactly whether two scopes overlap.

A scope entry names a path relative to the repository root and covers that path and everything below
it; `.` covers the whole repository. We cannot know whether `src/api` is a file or a directory, so it
is treated as both: `src/api`, `src/api/` and `src/api/**` mean the same, and the canonical form has no
trailing slash and no trailing `**`. Hence `**/x` overlaps every literal entry (`a/b` may hold `a/b/x`).

Globs follow fnmatch within a segment (`*`, `?`, `[a-z]`, `[!x]`/`[^x]`; no backslash escapes, a
leading dot is not special) and `**` as a whole segment matches zero or more segments. A concrete path
is a non-empty sequence of non-empty segments other than `.`/`..`, made of characters other than `/`
and control characters; an entry no such path matches (e.g. `[.]`) overlaps nothing.

Algorithm: two entries overlap iff some concrete path has a prefix matching each. Two glob segments
are intersected by a product automaton over their token sequences (character classes as code-point
ranges, plus a 4-state tracker rejecting the non-segments "", "." and ".."), a literal against a glob
by a regex, memoized per pair; whole entries by a product over segment positions, where `**` may
absorb zero segments or one segment the other side matches, and an exhausted side accepts if the
other's rest is satisfiable. Two literal entries use a plain prefix test. `ScopeIndex` keeps entries
in a trie on their leading literal segments and runs the query's segment automaton down that trie, so
only nodes the query can reach are visited (a node the query fully matches yields its whole subtree).
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Generic, TypeVar

__all__ = ["BadScope", "ScopeIndex", "normalize", "overlapping", "overlaps"]

K = TypeVar("K", bound=Hashable)

_Ranges = tuple[tuple[int, int], ...]
_Token = _Ranges | None  # a character set, or None for `*`

_MAX_CP = 0x10FFFF
_DOT = 0x2E
# Characters a concrete segment may hold: everything but C0/C1 controls, DEL and "/".
_VALID: _Ranges = ((0x20, 0x2E), (0x30, 0x7E), (0xA0, _MAX_CP))
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DRIVE = re.compile(r"[A-Za-z]:")
_DSTAR = "**"


class BadScope(ValueError):
    """A scope entry that cannot be claimed: `.path` is the entry as given, `.reason` says why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"bad scope {path!r}: {reason}")
        self.path = path
        self.reason = reason


class _GlobError(ValueError):
    """A malformed glob segment (internal; surfaced as BadScope)."""


# --------------------------------------------------------------------------- segments


def _is_glob(seg: str) -> bool:
    return "*" in seg or "?" in seg or "[" in seg


def _merge(ranges: Iterable[tuple[int, int]]) -> _Ranges:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return tuple(out)


def _intersect(a: _Ranges, b: _Ranges) -> _Ranges:
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def _complement(a: _Ranges) -> _Ranges:
    out: list[tuple[int, int]] = []
    nxt = 0
    for lo, hi in a:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= _MAX_CP:
        out.append((nxt, _MAX_CP))
    return tuple(out)


def _parse_class(seg: str, i: int) -> tuple[_Ranges, int]:
    """Parse the `[...]` starting at seg[i]; return its valid characters and the index after `]`."""
    j = i + 1
    negate = j < len(seg) and seg[j] in "!^"
    if negate:
        j += 1
    start = j
    if j < len(seg) and seg[j] == "]":
        j += 1  # a leading "]" is a member
    while j < len(seg) and seg[j] != "]":
        j += 1
    if j >= len(seg):
        raise _GlobError("unclosed '[' in glob")
    body = seg[start:j]
    ranges: list[tuple[int, int]] = []
    k = 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            lo, hi = ord(body[k]), ord(body[k + 2])
            if lo > hi:
                raise _GlobError(f"reversed range {body[k : k + 3]!r} in glob")
            ranges.append((lo, hi))
            k += 3
        else:
            ranges.append((ord(body[k]), ord(body[k])))
            k += 1
    members = _merge(ranges)
    if negate:
        members = _complement(members)
    return _intersect(members, _VALID), j + 1


@lru_cache(maxsize=8192)
def _tokens(seg: str) -> tuple[_Token, ...]:
    """Compile one segment (not `**`) to tokens; raises _GlobError on a malformed glob."""
    out: list[_Token] = []
    i = 0
    while i < len(seg):
        c = seg[i]
        if c == "*":
            if i + 1 < len(seg) and seg[i + 1] == "*":
                raise _GlobError("'**' must be a whole path segment")
            out.append(None)
            i += 1
        elif c == "?":
            out.append(_VALID)
            i += 1
        elif c == "[":
            ranges, i = _parse_class(seg, i)
            out.append(ranges)
        else:
            out.append(((ord(c), ord(c)),))
            i += 1
    return tuple(out)


def _dot_steps(d: int, chars: _Ranges) -> set[int]:
    """Next states of the ""/"."/".."/other tracker (0/1/2/3) after one character from `chars`."""
    nxt: set[int] = set()
    for lo, hi in chars:
        if lo <= _DOT <= hi:
            nxt.add(min(d + 1, 3))
        if lo != _DOT or hi != _DOT:
            nxt.add(3)
    return nxt


def _meet_tokens(p: tuple[_Token, ...], q: tuple[_Token, ...]) -> bool:
    """True iff some valid segment (not "", "." or "..") matches both token sequences."""
    lp, lq = len(p), len(q)
    seen: set[tuple[int, int, int]] = set()
    stack = [(0, 0, 0)]
    while stack:
        state = stack.pop()
        if state in seen:
            continue
        seen.add(state)
        i, j, d = state
        if i == lp and j == lq:
            if d == 3:
                return True
            continue
        if i < lp and p[i] is None:
            stack.append((i + 1, j, d))
        if j < lq and q[j] is None:
            stack.append((i, j + 1, d))
        if i < lp and j < lq:
            a, b = p[i], q[j]
            chars = _intersect(_VALID if a is None else a, _VALID if b is None else b)
            if chars:
                ni = i if a is None else i + 1
                nj = j if b is None else j + 1
                stack.extend((ni, nj, d2) for d2 in _dot_steps(d, chars))
    return False


def _char_class(ranges: _Ranges) -> str:
    if not ranges:
        return "(?!)"
    parts = (f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in ranges)
    return "[" + "".join(parts) + "]"


@lru_cache(maxsize=8192)
def _glob_regex(seg: str) -> re.Pattern[str]:
    """A regex deciding whether a literal segment (always a valid segment) matches the glob `seg`."""
    return re.compile("".join(".*" if t is None else _char_class(t) for t in _tokens(seg)), re.DOTALL)


@lru_cache(maxsize=1 << 16)
def _meet_cached(x: str, y: str) -> bool:
    if not _is_glob(x):
        return _glob_regex(y).fullmatch(x) is not None
    if not _is_glob(y):
        return _glob_regex(x).fullmatch(y) is not None
    return _meet_tokens(_tokens(x), _tokens(y))


def _seg_meet(x: str, x_glob: bool, y: str, y_glob: bool) -> bool:
    """True iff some concrete segment matches both segment patterns (neither is `**`)."""
    if not x_glob and not y_glob:
        return x == y
    return _meet_cached(x, y) if x <= y else _meet_cached(y, x)


def _seg_sat(x: str) -> bool:
    """True iff some concrete segment matches the pattern (not `**`)."""
    return not _is_glob(x) or _meet_cached("*", x)


# --------------------------------------------------------------------------- entries

_LIT, _GLOB, _STARS = 0, 1, 2  # segment kinds


@dataclass(frozen=True, slots=True)
class _Entry:
    text: str  # canonical form
    segs: tuple[str, ...]  # () for "."
    kinds: tuple[int, ...]  # _LIT, _GLOB or _STARS per segment
    sat: tuple[bool, ...]  # per segment: some concrete segment matches it (True for `**`)
    rest_sat: tuple[bool, ...]  # rest_sat[j]: segs[j:] matches some concrete segments
    literal: bool  # all segments literal
    prefix: int  # number of leading literal segments


def _split(path: str) -> list[str]:
    if not isinstance(path, str):
        raise BadScope(repr(path), "not a string")
    if not path:
        raise BadScope(path, "empty path")
    if "\x00" in path:
        raise BadScope(path, "NUL byte")
    if _CONTROL.search(path):
        raise BadScope(path, "control character")
    if path[0] in "/\\" or _DRIVE.match(path):
        raise BadScope(path, "absolute path")
    out: list[str] = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if not out:
                raise BadScope(path, "escapes the repository root")
            if out[-1] == _DSTAR:
                raise BadScope(path, "'..' after '**' is ambiguous")
            out.pop()
            continue
        if seg == _DSTAR:
            if out and out[-1] == _DSTAR:
                continue
        elif _is_glob(seg):
            try:
                _tokens(seg)
            except _GlobError as exc:
                raise BadScope(path, str(exc)) from None
        out.append(seg)
    while out and out[-1] == _DSTAR:
        out.pop()  # an entry covers its subtree anyway
    return out


@lru_cache(maxsize=1 << 16)
def _compile(path: str) -> _Entry:
    segs = tuple(_split(path))
    kinds = tuple(_STARS if s == _DSTAR else _GLOB if _is_glob(s) else _LIT for s in segs)
    sat = tuple(k != _GLOB or _seg_sat(s) for s, k in zip(segs, kinds, strict=True))
    rest = [True] * (len(segs) + 1)
    for j in range(len(segs) - 1, -1, -1):
        rest[j] = rest[j + 1] and sat[j]
    prefix = 0
    while prefix < len(segs) and kinds[prefix] == _LIT:
        prefix += 1
    return _Entry("/".join(segs) or ".", segs, kinds, sat, tuple(rest), prefix == len(segs), prefix)


def _overlap(a: _Entry, b: _Entry) -> bool:
    if a.literal and b.literal:
        n = min(len(a.segs), len(b.segs))
        return a.segs[:n] == b.segs[:n]
    sa, sb, ka, kb = a.segs, b.segs, a.kinds, b.kinds
    la, lb = len(sa), len(sb)
    seen: set[tuple[int, int]] = set()
    stack = [(0, 0)]
    while stack:
        state = stack.pop()
        if state in seen:
            continue
        seen.add(state)
        i, j = state
        if i == la:
            if b.rest_sat[j]:
                return True
            continue
        if j == lb:
            if a.rest_sat[i]:
                return True
            continue
        if ka[i] == _STARS:
            stack.append((i + 1, j))  # absorbs nothing more
            if b.sat[j]:
                stack.append((i, j + 1))  # absorbs the segment sb[j] matches
        elif kb[j] == _STARS:
            stack.append((i, j + 1))
            if a.sat[i]:
                stack.append((i + 1, j))
        elif _seg_meet(sa[i], ka[i] == _GLOB, sb[j], kb[j] == _GLOB):
            stack.append((i + 1, j + 1))
    return False


def _unique(paths: Sequence[str]) -> list[_Entry]:
    if isinstance(paths, str):
        raise TypeError("expected a sequence of paths, not a str")
    seen: dict[str, _Entry] = {}
    for p in paths:
        e = _compile(p)
        seen.setdefault(e.text, e)
    return list(seen.values())


def normalize(path: str) -> str:
    """Canonical form of a scope entry: no `.`/`..`/empty segments, no trailing `/` or `**`; `.` = all.

    Raises BadScope for an empty, absolute, root-escaping or control-character path and a bad glob.
    """
    return _compile(path).text


def overlaps(a: str, b: str) -> bool:
    """True iff some concrete path is covered by both scope entries (each covers its subtree)."""
    return _overlap(_compile(a), _compile(b))


def overlapping(paths_a: Sequence[str], paths_b: Sequence[str]) -> list[tuple[str, str]]:
    """The (a, b) pairs of normalized entries, one from each scope, that overlap."""
    eb = _unique(paths_b)
    return [(x.text, y.text) for x in _unique(paths_a) for y in eb if _overlap(x, y)]


# --------------------------------------------------------------------------- index


class _Node(Generic[K]):
    """A trie node: entries whose literal prefix is this node's path, grouped by their next segment."""

    __slots__ = ("children", "groups")

    def __init__(self) -> None:
        self.children: dict[str, _Node[K]] = {}
        # next segment after the literal prefix ("" for a fully literal entry) -> entries
        self.groups: dict[str, dict[tuple[K, str], _Entry]] = {}

    def walk(self) -> Iterator[_Node[K]]:
        stack: list[_Node[K]] = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(node.children.values())


def _group(e: _Entry) -> str:
    return e.segs[e.prefix] if e.prefix < len(e.segs) else ""


def _closure(q: _Entry, j: int, into: set[int]) -> None:
    into.add(j)
    if j < len(q.kinds) and q.kinds[j] == _STARS:
        into.add(j + 1)  # never two `**` in a row after normalization


class ScopeIndex(Generic[K]):
    """The scopes of many live claims, each under a hashable key, answering overlap queries exactly.

    Entries sit in a trie on their leading literal segments; a query only visits trie nodes its own
    pattern can reach, so checking a literal scope costs about its depth plus the matches.
    """

    def __init__(self) -> None:
        self._root: _Node[K] = _Node()
        self._claims: dict[K, list[_Entry]] = {}

    def __len__(self) -> int:
        return len(self._claims)

    def __contains__(self, key: object) -> bool:
        return key in self._claims

    def add(self, key: K, paths: Sequence[str]) -> None:
        """Record `key`'s scope, replacing any scope it had; raises BadScope (index unchanged)."""
        entries = _unique(paths)
        self.remove(key)
        self._claims[key] = entries
        for e in entries:
            node = self._root
            for seg in e.segs[: e.prefix]:
                node = node.children.setdefault(seg, _Node())
            node.groups.setdefault(_group(e), {})[(key, e.text)] = e

    def remove(self, key: K) -> None:
        """Forget `key`'s scope; a key not in the index is ignored."""
        for e in self._claims.pop(key, ()):
            path = [self._root]
            for seg in e.segs[: e.prefix]:
                path.append(path[-1].children[seg])
            groups = path[-1].groups
            group = groups[_group(e)]
            del group[(key, e.text)]
            if not group:
                del groups[_group(e)]
            for depth in range(e.prefix, 0, -1):  # prune emptied nodes
                node = path[depth]
                if node.groups or node.children:
                    break
                del path[depth - 1].children[e.segs[depth - 1]]

    def conflicts(self, paths: Sequence[str], exclude: K | None = None) -> list[tuple[K, str, str]]:
        """(key, their_path, my_path) for every live entry overlapping an entry of `paths`.

        Keys equal to `exclude` are skipped; paths in the result are normalized. Raises BadScope.
        """
        out: list[tuple[K, str, str]] = []
        for q in _unique(paths):
            self._query(q, exclude, out)
        return out

    def _query(self, q: _Entry, exclude: K | None, out: list[tuple[K, str, str]]) -> None:
        # `states`: positions of q reachable after matching the node's path (closed under skipping
        # `**`). Containing len(q.segs) means q covers the node's path and so everything below it.
        segs, kinds, n, mine = q.segs, q.kinds, len(q.segs), q.text
        start: set[int] = set()
        _closure(q, 0, start)
        stack: list[tuple[_Node[K], set[int]]] = [(self._root, start)]
        while stack:
            node, states = stack.pop()
            if n in states:
                for sub in node.walk():
                    for group in sub.groups.values():
                        out.extend(
                            (k, t, mine) for (k, t), e in group.items() if k != exclude and e.rest_sat[0]
                        )
                continue
            for nxt, group in node.groups.items():
                if nxt == "":  # literal entries equal to the node path: q must go on below it
                    if any(q.rest_sat[j] for j in states):
                        out.extend((k, t, mine) for (k, t) in group if k != exclude)
                    continue
                if nxt != _DSTAR and not any(
                    kinds[j] == _STARS or _seg_meet(nxt, True, segs[j], kinds[j] == _GLOB) for j in states
                ):
                    continue  # every entry here needs a next segment matching `nxt`; q has none
                out.extend((k, t, mine) for (k, t), e in group.items() if k != exclude and _overlap(e, q))
            if not node.children:
                continue
            if all(kinds[j] == _LIT for j in states):
                wanted: dict[str, set[int]] = {}  # literal positions only: direct lookups
                for j in states:
                    _closure(q, j + 1, wanted.setdefault(segs[j], set()))
                for name, nxt_states in wanted.items():
                    child = node.children.get(name)
                    if child is not None:
                        stack.append((child, nxt_states))
                continue
            for name, child in node.children.items():
                nxt_states = set()
                for j in states:
                    if kinds[j] == _STARS:
                        _closure(q, j, nxt_states)
                    elif _seg_meet(name, False, segs[j], kinds[j] == _GLOB):
                        _closure(q, j + 1, nxt_states)
                if nxt_states:
                    stack.append((child, nxt_states))

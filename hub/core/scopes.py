"""Claim scopes: normalize path/dir/glob entries and decide exactly whether two scopes overlap.

A scope entry names a path relative to the repository root and covers that path and everything below
it; `.` covers the whole repository. We cannot know whether `src/api` is a file or a directory, so it
is treated as both: `src/api`, `src/api/` and `src/api/**` mean the same, and the canonical form has no
trailing slash and no trailing `**`. Hence `**/x` overlaps every literal entry (`a/b` may hold `a/b/x`).

Globs follow fnmatch within a segment (`*`, `?`, `[a-z]`, `[!x]`/`[^x]`; no backslash escapes, a
leading dot is not special) and `**` as a whole segment matches zero or more segments. A concrete path
is a non-empty sequence of non-empty segments other than `.`/`..`, made of characters other than `/`
and control characters; an entry no such path matches (e.g. `[.]`) overlaps nothing.

Limits, checked by `normalize` (the edge: every claim and intent entry passes through it) with BadScope:
an entry as given has at most MAX_ENTRY_CHARS (1024) characters; its canonical form at most MAX_SEGMENTS
(64) segments of at most MAX_SEGMENT_CHARS (255) characters; a glob segment at most MAX_WILDCARDS (32)
wildcards (`*`, `?`, `[...]`) and a class body at most MAX_CLASS_CHARS (64) characters. The number of
entries per claim is claims.MAX_PATHS (256). The other functions take any well-formed entry, so that a
log written before these limits still replays.

Algorithm (no regex, no backtracking). Two entries, each satisfiable (an entry with a segment no
concrete segment matches covers nothing), overlap iff their segments meet pairwise from the first up to
the first `**` on either side or the end of either: that `**` absorbs the other's rest, and an ended
entry covers it. Before any `**` each segment matches exactly one path segment, so this is one diagonal
walk of at most 64 segment pairs. Two segments meet by a bit-parallel NFA simulation whose state set is
an int (bit k: "the first k tokens are matched"): a literal against a glob takes one row of a few int
operations per character of the literal; two globs take one row per token of the shorter over the
other's positions, times a 4-state tracker rejecting the non-segments "", "." and "..". Character
classes are code-point ranges; a compiled glob keeps the elementary intervals of its ranges with the
mask of tokens holding each, so a character costs one bisection. Segment pairs are memoized.
`ScopeIndex` keeps entries in a trie on their leading literal segments; a query walks down it the same
diagonal way (a literal segment is one child lookup, a glob meets each child's name), the whole subtree
overlaps where the query ends or reaches `**`, and an entry with a glob or `**` after its literal
prefix is checked by the diagonal walk from there.

Cost. A segment pair: at most 255 rows (two globs: plus at most 32 scans of the other's at most
2 x (255 + 3 x 32) intervals), and compiling a glob is linear. An entry pair: at most 64 segment pairs.
A query entry: each trie node at most once, one segment pair per node. What multiplies is many entries
on both sides (256 x 256 entry pairs, each up to 64 segment pairs), so a check runs on a Budget of
MAX_CHECK_STEPS steps, a segment pair costing twice its characters whether memoized or not: past it
TooCostly, which `claims` turns into `limit_exceeded` (the board shows an undecided pair as a clash).
The memo caches are bounded in entries, and through the limits in size per entry.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Generic, TypeVar

__all__ = [
    "MAX_CHECK_STEPS",
    "MAX_CLASS_CHARS",
    "MAX_ENTRY_CHARS",
    "MAX_SEGMENTS",
    "MAX_SEGMENT_CHARS",
    "MAX_WILDCARDS",
    "MAX_PATH_CHARS",
    "BadScope",
    "Budget",
    "ScopeIndex",
    "TooCostly",
    "concrete",
    "covers",
    "normalize",
    "overlapping",
    "overlaps",
]

MAX_ENTRY_CHARS = 1024  # an entry as given
MAX_SEGMENTS = 64  # segments of the canonical entry
MAX_SEGMENT_CHARS = 255  # a file name (NAME_MAX); a glob segment too
MAX_WILDCARDS = 32  # `*`, `?` and `[...]` in one segment
MAX_CLASS_CHARS = 64  # the body of one `[...]`
MAX_CHECK_STEPS = 200_000  # steps of one Budget: about 0.1 s of matching at the worst
MAX_PATH_CHARS = 4096  # a concrete path (a file a commit touches, PATH_MAX), checked by `concrete`

K = TypeVar("K", bound=Hashable)

_Ranges = tuple[tuple[int, int], ...]
_Token = _Ranges | None  # a character set, or None for `*`

_MAX_CP = 0x10FFFF
_DOT = 0x2E
# Characters a concrete segment may hold: everything but C0/C1 controls, DEL and "/".
_VALID: _Ranges = ((0x20, 0x2E), (0x30, 0x7E), (0xA0, _MAX_CP))
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # fixed, linear: normalization only, never globs
_DRIVE = re.compile(r"[A-Za-z]:")
_DSTAR = "**"


class BadScope(ValueError):
    """A scope entry that cannot be claimed: `.path` is the entry as given, `.reason` says why."""

    def __init__(self, path: str, reason: str) -> None:
        shown = repr(path) if len(path) <= 80 else f"{path[:60]!r}... ({len(path)} characters)"
        super().__init__(f"bad scope {shown}: {reason}")
        self.path = path
        self.reason = reason


class _GlobError(ValueError):
    """A malformed glob segment (internal; surfaced as BadScope)."""


class TooCostly(ValueError):
    """Deciding the overlaps would take more than `limit` steps (a Budget ran out); nothing was decided."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"deciding the overlaps takes more than {limit} steps")
        self.limit = limit


class Budget:
    """The steps one check may still take; TooCostly when they run out.

    A segment pair costs its worst case whether or not it is memoized, so running out depends on the
    scopes alone, never on what was asked before.
    """

    __slots__ = ("left", "limit")

    def __init__(self, limit: int = MAX_CHECK_STEPS) -> None:
        self.limit = self.left = limit

    def spend(self, steps: int) -> None:
        self.left -= steps
        if self.left < 0:
            raise TooCostly(self.limit)


# --------------------------------------------------------------------------- bit sets


def _skip(row: int, star: int) -> int:
    """Close `row` under skipping a `*` (or `**`) at a set position; stars are never adjacent."""
    return row | ((row & star) << 1)


def _spread(row: int, moves: int) -> int:
    """Close `row` under j -> j+1 for every j in `moves`, all runs at once (the carry does the walk)."""
    return row | ((moves + (row & moves)) ^ moves)


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


def _parse_class(seg: str, i: int) -> tuple[_Ranges, int, int]:
    """Parse the `[...]` at seg[i]: its valid characters, the index after `]` and the body's length."""
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
    return _intersect(members, _VALID), j + 1, j - i - 1


@lru_cache(maxsize=4096)
def _char(cp: int) -> _Ranges:
    """One shared token per character, so a compiled glob holds pointers, not tuples."""
    return ((cp, cp),)


@dataclass(frozen=True, slots=True, eq=False)
class _Glob:
    """A glob segment (not `**`) compiled for the bit-parallel matchers; bit k stands for token k."""

    tokens: tuple[_Token, ...]
    star: int  # `*` tokens
    dot: int  # class tokens holding "."
    non: int  # class tokens holding a character other than "."
    bounds: tuple[int, ...]  # elementary intervals [bounds[k], bounds[k+1]) of the code points
    masks: tuple[int, ...]  # masks[k]: class tokens holding interval k ("." is an interval of its own)
    wildcards: int  # `*`, `?` and `[...]`
    widest: int  # length of the longest class body

    def at(self, cp: int) -> int:
        """The class tokens holding the character `cp`."""
        return self.masks[bisect_right(self.bounds, cp) - 1]


@lru_cache(maxsize=512)
def _glob(seg: str) -> _Glob:
    """Compile one segment (not `**`); raises _GlobError on a malformed glob."""
    tokens: list[_Token] = []
    wildcards = widest = 0
    i = 0
    while i < len(seg):
        c = seg[i]
        if c == "*":
            if i + 1 < len(seg) and seg[i + 1] == "*":
                raise _GlobError("'**' must be a whole path segment")
            tokens.append(None)
            i += 1
        elif c == "?":
            tokens.append(_VALID)
            i += 1
        elif c == "[":
            ranges, i, body = _parse_class(seg, i)
            tokens.append(ranges)
            widest = max(widest, body)
        else:
            tokens.append(_char(ord(c)))
            i += 1
        if c in "*?[":
            wildcards += 1
    star = dot = non = 0
    toggles = {0: 0, _DOT: 0, _DOT + 1: 0}
    for k, t in enumerate(tokens):
        bit = 1 << k
        if t is None:
            star |= bit
            continue
        for lo, hi in t:  # disjoint ranges: toggling at both ends marks exactly the covered intervals
            toggles[lo] = toggles.get(lo, 0) ^ bit
            toggles[hi + 1] = toggles.get(hi + 1, 0) ^ bit
            if lo <= _DOT <= hi:
                dot |= bit
            if lo != _DOT or hi != _DOT:
                non |= bit
    bounds = tuple(sorted(toggles))
    masks: list[int] = []
    cur = 0
    for b in bounds:
        cur ^= toggles[b]
        masks.append(cur)
    return _Glob(tuple(tokens), star, dot, non, bounds, tuple(masks), wildcards, widest)


def _match(lit: str, g: _Glob) -> bool:
    """True iff the literal segment (always a valid one) matches the glob: one row per character."""
    star = g.star
    row = _skip(1, star)
    for ch in lit:
        row = ((row & g.at(ord(ch))) << 1) | (row & star)
        row |= (row & star) << 1
        if not row:
            return False
    return bool(row >> len(g.tokens) & 1)


def _class_masks(q: _Glob, a: _Ranges) -> tuple[int, bool, bool]:
    """For a class token `a`: q's class tokens sharing a non-dot character with it; a holds "."; a holds
    some other character."""
    bounds, masks = q.bounds, q.masks
    non = 0
    for lo, hi in a:
        k = bisect_right(bounds, lo) - 1
        while k < len(bounds) and bounds[k] <= hi:
            if bounds[k] != _DOT:
                non |= masks[k]
            k += 1
    return non, any(lo <= _DOT <= hi for lo, hi in a), any(lo != _DOT or hi != _DOT for lo, hi in a)


def _meet_globs(p: _Glob, q: _Glob) -> bool:
    """True iff some valid segment (not "", "." or "..") matches both globs.

    Rows run over p's tokens; r0..r3 are q's positions reached with the text so far "", ".", ".." or
    anything else (the tracker only moves up, so one pass per row in that order is enough).
    """
    star, qdot, qnon = q.star, q.dot, q.non
    moves = star | qdot | qnon  # what a `*` in p may walk over in q, tracker already at "anything"
    r0, r1, r2, r3 = 1, 0, 0, 0
    seen: dict[_Ranges, tuple[int, bool, bool]] = {}
    for a in p.tokens:
        r0, r1, r2, r3 = _skip(r0, star), _skip(r1, star), _skip(r2, star), _skip(r3, star)
        if a is None:  # p's `*` eats a character q's token at j (or q's `*`) also takes
            r1 = _skip(r1 | ((r0 & qdot) << 1) | (r0 & star), star)
            r2 = _skip(r2 | ((r1 & qdot) << 1) | (r1 & star), star)
            low = r0 | r1 | r2
            r3 = _spread(r3 | ((r2 & qdot) << 1) | ((low & qnon) << 1) | (low & star), moves)
            continue  # and may end here: the same positions go on to p's next token
        info = seen.get(a)
        if info is None:
            info = seen[a] = _class_masks(q, a)
        non, a_dot, a_non = info
        n1 = n2 = n3 = 0
        if a_dot:
            n1 = ((r0 & qdot) << 1) | (r0 & star)
            n2 = ((r1 & qdot) << 1) | (r1 & star)
            high = r2 | r3
            n3 = ((high & qdot) << 1) | (high & star)
        if a_non:
            every = r0 | r1 | r2 | r3
            n3 |= ((every & non) << 1) | (every & star)
        r0, r1, r2, r3 = 0, n1, n2, n3
        if not (n1 | n2 | n3):
            return False
    return bool(_skip(r3, star) >> len(q.tokens) & 1)


@lru_cache(maxsize=1 << 14)
def _meet_cached(x: str, y: str) -> bool:
    if not _is_glob(x):
        return _match(x, _glob(y))
    if not _is_glob(y):
        return _match(y, _glob(x))
    gx, gy = _glob(x), _glob(y)
    return _meet_globs(gx, gy) if len(gx.tokens) <= len(gy.tokens) else _meet_globs(gy, gx)


def _seg_meet(x: str, x_glob: bool, y: str, y_glob: bool, budget: Budget | None = None) -> bool:
    """True iff some concrete segment matches both segment patterns (neither is `**`)."""
    if not x_glob and not y_glob:
        return x == y
    if budget is not None:
        budget.spend(2 * (len(x) + len(y)) + 1)  # compiling the glob(s) and the rows, cached or not
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
    sat: bool  # every segment matches some concrete segment (else the entry covers nothing)
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
                _glob(seg)
            except _GlobError as exc:
                raise BadScope(path, str(exc)) from None
        out.append(seg)
    while out and out[-1] == _DSTAR:
        out.pop()  # an entry covers its subtree anyway
    return out


@lru_cache(maxsize=4096)
def _compile(path: str) -> _Entry:
    segs = tuple(_split(path))
    kinds = tuple(_STARS if s == _DSTAR else _GLOB if _is_glob(s) else _LIT for s in segs)
    sat = all(k != _GLOB or _seg_sat(s) for s, k in zip(segs, kinds, strict=True))
    prefix = 0
    while prefix < len(segs) and kinds[prefix] == _LIT:
        prefix += 1
    return _Entry("/".join(segs) or ".", segs, kinds, sat, prefix == len(segs), prefix)


def _check_limits(path: str) -> _Entry:
    """Compile an entry that is within the limits (module docstring); BadScope otherwise."""
    if isinstance(path, str) and len(path) > MAX_ENTRY_CHARS:
        raise BadScope(path, f"longer than {MAX_ENTRY_CHARS} characters")
    e = _compile(path)
    if len(e.segs) > MAX_SEGMENTS:
        raise BadScope(path, f"more than {MAX_SEGMENTS} path segments")
    for seg, kind in zip(e.segs, e.kinds, strict=True):
        if len(seg) > MAX_SEGMENT_CHARS:
            raise BadScope(path, f"a segment longer than {MAX_SEGMENT_CHARS} characters")
        if kind == _GLOB:
            g = _glob(seg)
            if g.wildcards > MAX_WILDCARDS:
                raise BadScope(path, f"more than {MAX_WILDCARDS} wildcards in one segment")
            if g.widest > MAX_CLASS_CHARS:
                raise BadScope(path, f"a '[...]' longer than {MAX_CLASS_CHARS} characters")
    return e


def _overlap(a: _Entry, b: _Entry, start: int = 0, budget: Budget | None = None) -> bool:
    """True iff the entries overlap, given that their first `start` segments meet pairwise (no `**`).

    Both satisfiable, they overlap iff their segments meet pairwise up to the first `**` on either side
    or the end of either: that `**` absorbs the other's rest, and an ended entry covers the other's
    rest. Before any `**` each segment matches one path segment, so the walk is a diagonal.
    """
    if not (a.sat and b.sat):
        return False
    if a.literal and b.literal:
        n = min(len(a.segs), len(b.segs))
        return a.segs[start:n] == b.segs[start:n]
    ka, kb, sa, sb = a.kinds, b.kinds, a.segs, b.segs
    for i in range(start, min(len(sa), len(sb))):
        if budget is not None:
            budget.spend(1)
        if ka[i] == _STARS or kb[i] == _STARS:
            return True
        if not _seg_meet(sa[i], ka[i] == _GLOB, sb[i], kb[i] == _GLOB, budget):
            return False
    return True


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

    Raises BadScope for an empty, absolute, root-escaping or control-character path, a bad glob, and an
    entry over the limits of the module docstring.
    """
    return _check_limits(path).text


def overlaps(a: str, b: str) -> bool:
    """True iff some concrete path is covered by both scope entries (each covers its subtree)."""
    return _overlap(_compile(a), _compile(b))


def overlapping(
    paths_a: Sequence[str], paths_b: Sequence[str], budget: Budget | None = None
) -> list[tuple[str, str]]:
    """The (a, b) pairs of normalized entries, one from each scope, that overlap.

    Raises TooCostly if `budget` runs out (literal pairs are free: a tuple comparison each).
    """
    eb = _unique(paths_b)
    return [(x.text, y.text) for x in _unique(paths_a) for y in eb if _overlap(x, y, 0, budget)]


# --------------------------------------------------------------------------- concrete paths (the git guard)
#
# A concrete path names one file a commit touches. Its characters are taken literally (`*`, `?` and `[`
# are characters of a file name here), and an entry covers it when the entry matches some prefix of it
# segment by segment, a `**` standing for any number of segments: the entry `src` covers `src/a.py`, but
# `src/api` does not cover a file `src` (they overlap as scopes, yet the file is not inside the entry).


def concrete(path: str) -> tuple[str, ...]:
    """The segments of a concrete path relative to the repository root, taken literally.

    Raises BadScope unless it is a relative path of segments other than "", "." and "..", without control
    characters, of at most MAX_PATH_CHARS characters and segments of at most MAX_SEGMENT_CHARS.
    """
    if not isinstance(path, str):
        raise BadScope(repr(path), "not a string")
    if not path:
        raise BadScope(path, "empty path")
    if len(path) > MAX_PATH_CHARS:
        raise BadScope(path, f"longer than {MAX_PATH_CHARS} characters")
    if _CONTROL.search(path):
        raise BadScope(path, "control character")
    if path[0] == "/":
        raise BadScope(path, "absolute path")
    segs = tuple(path.split("/"))
    for seg in segs:
        if seg in ("", ".", ".."):
            why = f"a {seg!r} segment" if seg else "an empty segment"
            raise BadScope(path, f"not a plain relative path ({why})")
        if len(seg) > MAX_SEGMENT_CHARS:
            raise BadScope(path, f"a segment longer than {MAX_SEGMENT_CHARS} characters")
    return segs


@lru_cache(maxsize=1 << 14)
def _lit_glob(lit: str, pattern: str) -> bool:
    return _match(lit, _glob(pattern))


def _matches(lit: str, pattern: str, budget: Budget | None) -> bool:
    """True iff the concrete segment (taken literally) matches the glob segment `pattern`."""
    if budget is not None:
        budget.spend(2 * (len(lit) + len(pattern)) + 1)  # as _seg_meet: cached or not
    return _lit_glob(lit, pattern)


def _covers(e: _Entry, segs: Sequence[str], start: int, budget: Budget | None) -> bool:
    """True iff entry `e` covers the concrete path `segs`, its first `start` segments (all literal) being
    the path's: an NFA over e's positions, one row per path segment (bit i: e's first i segments matched)."""
    if not e.sat:
        return False
    kinds, pats, n = e.kinds, e.segs, len(e.segs)
    stars = 0
    for i, k in enumerate(kinds):
        if k == _STARS:
            stars |= 1 << i
    done = 1 << n
    row = _skip(1 << start, stars)  # no two `**` are adjacent and none is last: one skip closes a row
    for seg in segs[start:]:
        if row & done:
            return True  # a prefix matched: the entry covers everything below it
        nxt = row & stars  # a `**` takes this segment and stays
        rest = row & ~stars
        while rest:
            low = rest & -rest
            rest ^= low
            i = low.bit_length() - 1
            if budget is not None:
                budget.spend(1)
            if pats[i] == seg if kinds[i] == _LIT else _matches(seg, pats[i], budget):
                nxt |= low << 1
        row = _skip(nxt, stars)
        if not row:
            return False
    return bool(row & done)


def covers(entry: str, path: str) -> bool:
    """True iff the scope entry covers the concrete path (see `concrete`); BadScope for a bad path."""
    return _covers(_compile(entry), concrete(path), 0, None)


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

    def covering(self, segs: Sequence[str], budget: Budget | None = None) -> list[tuple[K, str]]:
        """(key, entry) for every entry that covers the concrete path `segs` (from `concrete`).

        Walks down the trie along the path's own segments: literal entries met on the way cover it, and an
        entry with a glob or `**` after its literal prefix is matched from there. Raises TooCostly if
        `budget` runs out.
        """
        out: list[tuple[K, str]] = []
        node, d = self._root, 0
        while True:
            if budget is not None:
                budget.spend(1)
            for nxt, group in node.groups.items():
                if nxt == "":  # literal entries equal to the node path: a prefix of the path
                    out.extend(group)
                elif nxt == _DSTAR or (d < len(segs) and _matches(segs[d], nxt, budget)):
                    out.extend(kt for kt, e in group.items() if _covers(e, segs, d, budget))
            child = node.children.get(segs[d]) if d < len(segs) else None
            if child is None:
                return out
            node, d = child, d + 1

    def conflicts(
        self, paths: Sequence[str], exclude: K | None = None, budget: Budget | None = None
    ) -> list[tuple[K, str, str]]:
        """(key, their_path, my_path) for every live entry overlapping an entry of `paths`.

        Keys equal to `exclude` are skipped; paths in the result are normalized. Raises BadScope, and
        TooCostly if `budget` runs out (listing the overlaps found costs nothing from it).
        """
        out: list[tuple[K, str, str]] = []
        for q in _unique(paths):
            self._query(q, exclude, out, budget)
        return out

    def _query(
        self, q: _Entry, exclude: K | None, out: list[tuple[K, str, str]], budget: Budget | None
    ) -> None:
        # A node at depth d is reached while q.segs[:d] meets its path segment by segment (no `**` so
        # far). From there q covers the node's whole subtree once it ends or reaches a `**` (_overlap).
        if not q.sat:
            return  # q covers nothing
        segs, kinds, n, mine = q.segs, q.kinds, len(q.segs), q.text
        stack: list[tuple[_Node[K], int]] = [(self._root, 0)]
        while stack:
            node, d = stack.pop()
            if budget is not None:
                budget.spend(1)
            if d == n or kinds[d] == _STARS:
                for sub in node.walk():
                    for group in sub.groups.values():
                        out.extend((k, t, mine) for (k, t), e in group.items() if k != exclude and e.sat)
                continue
            for nxt, group in node.groups.items():
                if nxt == "":  # literal entries equal to the node path: they cover the rest of q
                    out.extend((k, t, mine) for (k, t) in group if k != exclude)
                elif nxt == _DSTAR or _seg_meet(nxt, True, segs[d], kinds[d] == _GLOB, budget):
                    out.extend(
                        (k, t, mine)
                        for (k, t), e in group.items()
                        if k != exclude and _overlap(e, q, d, budget)
                    )
            if kinds[d] == _LIT:
                child = node.children.get(segs[d])
                if child is not None:
                    stack.append((child, d + 1))
            else:
                for name, child in node.children.items():
                    if _seg_meet(name, False, segs[d], True, budget):
                        stack.append((child, d + 1))

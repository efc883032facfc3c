"""Tests for hub.core.scopes: normalization, exact overlap of path/dir/glob entries, ScopeIndex."""

from __future__ import annotations

import fnmatch
import itertools
import re
import sys
from collections import Counter
from collections.abc import Callable
from functools import cache
from types import FrameType

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hub.core import scopes
from hub.core.scopes import (
    MAX_CHECK_STEPS,
    MAX_CLASS_CHARS,
    MAX_ENTRY_CHARS,
    MAX_SEGMENT_CHARS,
    MAX_SEGMENTS,
    MAX_WILDCARDS,
    BadScope,
    Budget,
    ScopeIndex,
    TooCostly,
    concrete,
    covers,
    normalize,
    overlapping,
    overlaps,
)

# --------------------------------------------------------------------------- normalization


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("b", "b"),
        ("./a/../b", "b"),
        ("a//b///c", "a/b/c"),
        ("src/api/", "src/api"),
        ("src/api", "src/api"),
        ("./src/./api/.", "src/api"),
        (".", "."),
        ("./", "."),
        ("a/..", "."),
        ("src/**", "src"),
        ("src/**/", "src"),
        ("**", "."),
        ("a/**/**/b", "a/**/b"),
        ("src/*/../x.py", "src/x.py"),
        ("src/*.py", "src/*.py"),
        ("[]]", "[]]"),
        ("a]b", "a]b"),
        ("naïve/ü.py", "naïve/ü.py"),
        ("with space/x", "with space/x"),
    ],
)
def test_normalize_cases(raw: str, canonical: str) -> None:
    """normalize maps each raw entry to its canonical form."""
    assert normalize(raw) == canonical
    assert normalize(canonical) == canonical


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "/etc/passwd",
        "//x",
        "C:/x",
        "c:x",
        "\\\\server\\share",
        "..",
        "../a",
        "a/../..",
        "./a/../../b",
        "a\x00b",
        "a\nb",
        "a\tb",
        "a\x7fb",
        "a\x85b",
        "[ab",
        "src/[!",
        "src/[]",
        "a/[z-a]",
        "a**",
        "**b",
        "src/a**b/c",
        "***",
        "a/**/../b",
    ],
)
def test_normalize_rejects(raw: str) -> None:
    """Empty, absolute, root-escaping, control-character and malformed-glob entries raise BadScope."""
    with pytest.raises(BadScope) as info:
        normalize(raw)
    assert info.value.path == raw
    assert info.value.reason


def test_bad_scope_carries_path_and_reason() -> None:
    """BadScope exposes the offending path and a human reason."""
    assert issubclass(BadScope, ValueError)
    with pytest.raises(BadScope) as info:
        normalize("../x")
    assert info.value.path == "../x"
    assert "root" in info.value.reason
    assert "../x" in str(info.value)


def test_double_star_inside_a_class_is_fine() -> None:
    """`**` inside a character class is two class members, not a misplaced `**`."""
    assert normalize("a[**]b") == "a[**]b"
    assert overlaps("a[**]b", "a*b")


# --------------------------------------------------------------------------- overlap table

OVERLAP_CASES = [
    ("src", "src/api/x.py", True),
    ("src/api/", "src/api/x.py", True),
    ("src/api", "src/api", True),
    ("src/a", "src/b", False),
    ("src/a", "src/ab", False),
    ("src/api", "src/api2/x.py", False),
    ("src/*.py", "src/a.py", True),
    ("src/*.py", "src/sub/a.py", False),
    ("src/**/*.py", "src/a/b/c.py", True),
    ("src/**/*.py", "src/a.py", True),
    ("src/**/*.py", "docs/a.py", False),
    ("src/**", "src", True),
    ("*.md", "docs/*.md", False),
    ("**/*.md", "docs/*.md", True),
    ("[ab].txt", "[bc].txt", True),
    ("[a].txt", "[b].txt", False),
    ("[a-c].txt", "[!abc].txt", False),
    ("[a-c].txt", "[^ab].txt", True),
    ("a*b", "*c", False),
    ("a*", "*b", True),
    ("a?c", "ab*", True),
    ("a?", "abc", False),
    ("**/x", "y/**", True),
    ("**/x", "y/z", True),  # y/z may be a directory holding y/z/x
    ("a/**/x", "b/c", False),
    ("**/*.lock", "src/app.py", True),  # src/app.py/poetry.lock, as far as we know
    ("**/x/**/y", "a/*/b/y", True),
    (".", "anything/at/all.py", True),
    (".", "**/*.md", True),
    (".", ".", True),
    ("src/*", "src/a/b.py", True),
    ("src/*/", "src/a/b.py", True),
    ("src/*", "src", True),
    ("src/*/tests", "src/pkg", True),
    ("src/*/tests", "src/pkg/lib", False),
    ("*", "x", True),
    ("?", "ab", False),
    (".?", "?.", False),  # only ".." fits both, and ".." is not a segment
    ("[.]", ".", False),  # "[.]" matches only ".", which no real path holds
    ("*.", ".*", True),  # "..." is a fine name
    ("[!a]", "*[!b]", True),  # "c"
    ("a/[.]/b", "a/b", False),
]


@pytest.mark.parametrize(("a", "b", "expected"), OVERLAP_CASES)
def test_overlap_table(a: str, b: str, expected: bool) -> None:
    """overlaps gives the expected, symmetric answer on hand-picked cases."""
    assert overlaps(a, b) is expected
    assert overlaps(b, a) is expected


def test_overlaps_accepts_unnormalized_and_rejects_bad() -> None:
    """overlaps normalizes its inputs and raises BadScope on bad ones."""
    assert overlaps("./src/", "src//a.py")
    with pytest.raises(BadScope):
        overlaps("src", "../x")


def test_overlapping_pairs() -> None:
    """overlapping lists exactly the overlapping (a, b) pairs, normalized and without duplicates."""
    got = overlapping(["src/api/", "docs", "src/api"], ["src/api/x.py", "README.md", "docs/*.md"])
    assert got == [("src/api", "src/api/x.py"), ("docs", "docs/*.md")]
    assert overlapping([], ["."]) == []


def test_overlapping_rejects_a_bare_string() -> None:
    """A str passed where a sequence of paths is expected is a TypeError, not a scope per character."""
    with pytest.raises(TypeError):
        overlapping("src", ["src"])


# --------------------------------------------------------------------------- brute-force oracle
#
# The oracle decides overlap by enumeration: a pattern covers a concrete path when some prefix of it
# matches (regex per segment, `**` = any number of segments); two patterns overlap when some path of
# the finite UNIVERSE is covered by both. Why the finite universe is enough:
#  * Depth. In an overlap witness every segment is consumed by a non-`**` segment of at least one
#    pattern (segments both `**`s absorb, or that lie below both matched prefixes, can be dropped), so
#    with at most 2 non-`**` segments per pattern a witness of depth <= 4 exists.
#  * Segments. Each witness segment only has to match one or two segment patterns of SEG_PATTERNS
#    (or be free). test_segment_universe_is_complete checks that every such pair with a common concrete
#    segment has one in SEG_UNIVERSE. That check searches strings of length <= 5 over "ab.c": a
#    shortest common match uses <= 2 + 2 characters for non-`*` tokens plus at most one extra
#    `*`-vs-`*` character (to avoid "", "." and ".."), and "a", "b", "c", "." represent every
#    character class the patterns can intersect to (only "is it a dot" matters beyond membership).

SEG_PATTERNS = [
    "a", "b", "ab", ".a", "*", "?", "a*", "*b", "*a*", "a*b", "[ab]", "[!a]", "[!a]*", "?b",
    "[.]", ".?", "?.", "[a-b]?", "*[!b]", "[^b]",
]  # fmt: skip
SEG_UNIVERSE = ["a", "ab", "b", ".a", "a.", "c", ".b", "b."]
UNIVERSE = ["/".join(p) for depth in range(1, 5) for p in itertools.product(SEG_UNIVERSE, repeat=depth)]
UNIVERSE_TEXT = "\n".join("/" + u for u in UNIVERSE)  # scanned by one multiline regex per pattern


def _seg_regex(seg: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(seg):
        c = seg[i]
        if c == "*":
            out.append("[^/\n]*")
        elif c == "?":
            out.append("[^/\n]")
        elif c == "[":
            j = seg.index("]", i + 2)
            body = seg[i + 1 : j]
            out.append("[^/\n" + body[1:] + "]" if body[0] in "!^" else "[" + body + "]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


@cache
def _path_regex(pattern: str) -> re.Pattern[str]:
    segs = [] if pattern == "." else pattern.split("/")
    body = "".join("(?:/[^/\n]+)*" if s == "**" else "/" + _seg_regex(s) for s in segs)
    return re.compile("^" + body + "(?:/.*)?$", re.MULTILINE)


@cache
def _covered(pattern: str) -> frozenset[str]:
    return frozenset(m.group()[1:] for m in _path_regex(pattern).finditer(UNIVERSE_TEXT))


def _oracle(a: str, b: str) -> bool:
    return not _covered(a).isdisjoint(_covered(b))


def _valid_segments(max_len: int) -> list[str]:
    words = ("".join(t) for n in range(1, max_len + 1) for t in itertools.product("ab.c", repeat=n))
    return [w for w in words if w not in (".", "..")]


def test_segment_universe_is_complete() -> None:
    """Every pair of oracle segment patterns that share a concrete segment shares one in SEG_UNIVERSE."""
    words = _valid_segments(5)
    pats = [*SEG_PATTERNS, "*"]
    matched = {p: {w for w in words if re.fullmatch(_seg_regex(p), w)} for p in pats}
    for p, q in itertools.combinations_with_replacement(pats, 2):
        common = matched[p] & matched[q]
        if common:
            assert common & set(SEG_UNIVERSE), (p, q)


def test_segment_overlap_matches_enumeration() -> None:
    """For single segments, overlaps equals exhaustive search over short strings."""
    words = _valid_segments(5)
    matched = {p: {w for w in words if re.fullmatch(_seg_regex(p), w)} for p in SEG_PATTERNS}
    for p, q in itertools.product(SEG_PATTERNS, repeat=2):
        assert overlaps(p, q) == bool(matched[p] & matched[q]), (p, q)


@st.composite
def patterns(draw: st.DrawFn) -> str:
    """An entry with at most two non-`**` segments from SEG_PATTERNS, `**` optionally around them."""
    segs = draw(st.lists(st.sampled_from(SEG_PATTERNS), max_size=2))
    stars = draw(st.lists(st.booleans(), min_size=len(segs) + 1, max_size=len(segs) + 1))
    out: list[str] = []
    for i, star in enumerate(stars):
        if star:
            out.append("**")
        if i < len(segs):
            out.append(segs[i])
    return "/".join(out) or "."


@settings(max_examples=300, deadline=None)
@given(patterns(), patterns())
def test_overlaps_matches_oracle(a: str, b: str) -> None:
    """overlaps agrees with brute-force enumeration over a provably sufficient universe."""
    assert overlaps(a, b) == _oracle(a, b)
    assert overlaps(b, a) == overlaps(a, b)


@settings(max_examples=200, deadline=None)
@given(patterns(), st.lists(st.sampled_from(["./", ".//", "x/../", "./y//../"]), max_size=3), st.booleans())
def test_normalize_noise_is_harmless(a: str, noise: list[str], slash: bool) -> None:
    """Leading `./`, `.//`, `x/..` and a trailing `/` do not change the canonical form or coverage."""
    noisy = "".join(noise) + a + ("/" if slash else "")
    assert normalize(noisy) == normalize(a)
    assert normalize(normalize(a)) == normalize(a)
    assert _covered(normalize(a)) == _covered(a)


# --------------------------------------------------------------------------- ScopeIndex


def test_index_basic() -> None:
    """conflicts finds ancestors, descendants and globs, honours exclude, and forgets removed keys."""
    idx: ScopeIndex[str] = ScopeIndex()
    idx.add("alice", ["src/api/", "docs/*.md"])
    idx.add("bob", ["src/api/routes.py"])
    idx.add("carol", ["*.lock"])
    idx.add("dave", ["tests"])
    assert len(idx) == 4 and "bob" in idx
    assert sorted(idx.conflicts(["src/api/routes.py"])) == [
        ("alice", "src/api", "src/api/routes.py"),
        ("bob", "src/api/routes.py", "src/api/routes.py"),
    ]
    assert idx.conflicts(["src/api/routes.py"], exclude="alice") == [
        ("bob", "src/api/routes.py", "src/api/routes.py")
    ]
    assert sorted(idx.conflicts(["src"])) == [
        ("alice", "src/api", "src"),
        ("bob", "src/api/routes.py", "src"),
    ]
    assert idx.conflicts(["docs/guide/x.md"]) == []
    assert idx.conflicts(["docs/x.md"]) == [("alice", "docs/*.md", "docs/x.md")]
    assert idx.conflicts(["poetry.lock"]) == [("carol", "*.lock", "poetry.lock")]
    assert sorted(k for k, _, _ in idx.conflicts(["."])) == ["alice", "alice", "bob", "carol", "dave"]
    idx.remove("alice")
    idx.remove("nobody")
    assert idx.conflicts(["src/api/routes.py"]) == [("bob", "src/api/routes.py", "src/api/routes.py")]
    assert "alice" not in idx


def test_index_add_replaces_and_validates() -> None:
    """add replaces a key's scope, dedupes equal entries, and leaves the index unchanged on BadScope."""
    idx: ScopeIndex[int] = ScopeIndex()
    idx.add(1, ["src", "src/", "./src/**"])
    assert idx.conflicts(["src/x"]) == [(1, "src", "src/x")]
    with pytest.raises(BadScope):
        idx.add(1, ["lib", "/abs"])
    assert idx.conflicts(["src/x"]) == [(1, "src", "src/x")]
    idx.add(1, ["lib"])
    assert idx.conflicts(["src/x"]) == []
    with pytest.raises(BadScope):
        idx.conflicts(["../x"])


def test_index_unsatisfiable_entry_conflicts_with_nothing() -> None:
    """An entry no real path can match (here `[.]`) never conflicts, even with `.`."""
    idx: ScopeIndex[int] = ScopeIndex()
    idx.add(1, ["a/[.]"])
    assert idx.conflicts(["."]) == []
    assert idx.conflicts(["a"]) == []


INDEX_SEGS = ["a", "b", "ab", "*", "a*", "[ab]", "[!a]", "?", "**", "*.", "x.py"]
index_patterns = st.lists(st.sampled_from(INDEX_SEGS), max_size=4).map(lambda s: "/".join(s) or ".")


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.integers(0, 9), st.lists(index_patterns, min_size=1, max_size=3), max_size=10),
    st.sets(st.integers(0, 9), max_size=3),
    st.lists(index_patterns, min_size=1, max_size=3),
    st.none() | st.integers(0, 9),
)
def test_index_matches_brute_force(
    claims: dict[int, list[str]], removed: set[int], query: list[str], exclude: int | None
) -> None:
    """ScopeIndex.conflicts returns exactly the brute-force answer over all live claims."""
    idx: ScopeIndex[int] = ScopeIndex()
    for key, paths in claims.items():
        idx.add(key, paths)
    for key in removed:
        idx.remove(key)
    live = {k: v for k, v in claims.items() if k not in removed}
    mine = list(dict.fromkeys(normalize(p) for p in query))
    expected = [
        (key, theirs, m)
        for m in mine
        for key, paths in live.items()
        if key != exclude
        for theirs in dict.fromkeys(normalize(p) for p in paths)
        if overlaps(theirs, m)
    ]
    assert Counter(idx.conflicts(query, exclude=exclude)) == Counter(expected)
    for key in list(live):
        idx.remove(key)
    assert len(idx) == 0
    assert idx.conflicts(["."]) == []


# --------------------------------------------------------------------------- matchers vs a reference
#
# The reference is fnmatch.fnmatchcase (no backslash escapes either; `[^x]` is spelled `[!x]` there) on
# small alphabets: "c" stands for every character the classes below leave out.

REF_TOKENS = ["a", "b", ".", "c", "?", "*", "[ab]", "[!a]", "[^b]", "[a-b]", "[.]", "[!.]", "[]a]", "[.a]"]
REF_ALPHABET = "abc.]"


def _fnmatch_pattern(glob: str) -> str:
    return glob.replace("[^", "[!")  # safe: no REF_TOKENS class holds "[" or "^" as a member


@st.composite
def ref_globs(draw: st.DrawFn, max_fixed: int = 4) -> str:
    """A glob segment of REF_TOKENS: at most `max_fixed` one-character tokens, stars never adjacent."""
    out: list[str] = []
    fixed = 0
    for tok in draw(st.lists(st.sampled_from(REF_TOKENS), min_size=1, max_size=2 * max_fixed + 1)):
        if tok == "*":
            if out and out[-1] == "*":
                continue
        elif fixed == max_fixed:
            continue
        else:
            fixed += 1
        out.append(tok)
    glob = "".join(out)
    assume(glob not in (".", ".."))
    return glob


ref_literals = st.text(REF_ALPHABET, min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))


@settings(max_examples=500, deadline=None)
@given(ref_literals, ref_globs())
def test_literal_against_glob_matches_fnmatch(lit: str, glob: str) -> None:
    """A literal segment meets a glob segment iff fnmatch says the glob matches it."""
    expected = fnmatch.fnmatchcase(lit, _fnmatch_pattern(glob))
    assert overlaps(lit, glob) is expected
    assert overlaps(f"x/{glob}/y", f"x/{lit}") is expected


@cache
def _ref_words() -> tuple[str, ...]:
    """Every valid segment of up to 7 characters over REF_ALPHABET (enough for two globs of at most 2
    one-character tokens each: one character per such token, plus up to 3 for the ""/"."/".." rule)."""
    return tuple(w for w in _valid_segments_over(REF_ALPHABET, 7))


def _valid_segments_over(alphabet: str, max_len: int) -> list[str]:
    words = ("".join(t) for n in range(1, max_len + 1) for t in itertools.product(alphabet, repeat=n))
    return [w for w in words if w not in (".", "..")]


@cache
def _ref_matched(glob: str) -> frozenset[str]:
    rx = re.compile(fnmatch.translate(_fnmatch_pattern(glob)))
    return frozenset(w for w in _ref_words() if rx.match(w))


@settings(max_examples=300, deadline=None)
@given(ref_globs(max_fixed=2), ref_globs(max_fixed=2))
def test_glob_against_glob_matches_enumeration(x: str, y: str) -> None:
    """Two glob segments meet iff some short valid segment matches both by fnmatch."""
    expected = not _ref_matched(x).isdisjoint(_ref_matched(y))
    assert overlaps(x, y) is expected
    assert overlaps(y, x) is expected


# --------------------------------------------------------------------------- limits


LONGEST = "/".join(["a" * 255] * 3 + ["a" * 254, "b"])


def test_limits_are_enforced_by_normalize() -> None:
    """Each limit admits its bound and refuses one more, with BadScope naming it."""
    ok_and_over = [
        (LONGEST, LONGEST + "c", "longer than 1024 characters"),
        ("/".join(["a"] * MAX_SEGMENTS), "/".join(["a"] * (MAX_SEGMENTS + 1)), "more than 64 path segments"),
        ("a" * MAX_SEGMENT_CHARS, "a" * (MAX_SEGMENT_CHARS + 1), "segment longer than 255"),
        ("*a" * MAX_WILDCARDS, "*a" * MAX_WILDCARDS + "?", "more than 32 wildcards"),
        (
            "[" + "a" * MAX_CLASS_CHARS + "]",
            "[" + "a" * (MAX_CLASS_CHARS + 1) + "]",
            "'[...]' longer than 64",
        ),
    ]
    assert len(LONGEST) == MAX_ENTRY_CHARS
    for ok, over, reason in ok_and_over:
        assert normalize(ok) == ok
        with pytest.raises(BadScope) as info:
            normalize(over)
        assert info.value.path == over and reason in info.value.reason
        assert len(str(info.value)) < 200  # a long entry is not echoed whole in the message
    # counted on the canonical form: dot segments and `..` do not count, the raw length does
    assert normalize("./" * 100 + "a") == "a"
    assert normalize("/".join(["a"] * MAX_SEGMENTS) + "/b/..") == "/".join(["a"] * MAX_SEGMENTS)


def test_limits_apply_at_the_edge_only() -> None:
    """Entries over the limits (say, from a log written before them) still compare and index."""
    long = "/".join(["a"] * 100)
    assert overlaps(long, "a/**/b")
    idx: ScopeIndex[int] = ScopeIndex()
    idx.add(1, [long, "*" * 1 + "?" * 40])
    assert [k for k, _, _ in idx.conflicts(["a"])] == [1]


# --------------------------------------------------------------------------- hostile input
#
# A backtracking matcher would not finish these (the first took seconds at n=35 and doubles per
# character); here each is also measured by the Python lines hub/core/scopes.py executes, caches cleared,
# against a bound linear in the input.


def _scope_lines(fn: Callable[[], object]) -> int:
    """Lines of hub/core/scopes.py executed by fn(), with every memo cache cleared first."""
    for cached in (scopes._compile, scopes._glob, scopes._meet_cached, scopes._char):
        cached.cache_clear()
    target = scopes.__file__
    count = 0

    def local(frame: FrameType, event: str, arg: object) -> object:
        nonlocal count
        if event == "line":
            count += 1
        return local

    def tracer(frame: FrameType, event: str, arg: object) -> object:
        return local if frame.f_code.co_filename == target else None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(previous)
    return count


ISSUE_GLOB = "src/" + "*a" * 9 + "*b"
HOSTILE_GLOB = "src/" + "*a" * (MAX_WILDCARDS - 1) + "*b"


@pytest.mark.parametrize("glob", [ISSUE_GLOB, HOSTILE_GLOB])
def test_star_heavy_glob_against_long_literal_is_linear(glob: str) -> None:
    """The issue's glob against src/aaa…a: no match, in work linear in the literal's length."""
    lines = {}
    for n in (64, 128, MAX_SEGMENT_CHARS):
        literal = "src/" + "a" * n
        lines[n] = _scope_lines(lambda literal=literal: overlaps(glob, literal))  # type: ignore[misc]
        assert not overlaps(glob, literal)
        assert overlaps(glob, literal + "b")
    assert lines[MAX_SEGMENT_CHARS] <= 12 * MAX_SEGMENT_CHARS + 400
    assert lines[128] - lines[64] <= 12 * 64 and lines[MAX_SEGMENT_CHARS] - lines[128] <= 12 * 127


def test_double_star_chains_against_long_paths() -> None:
    """`**`-heavy entries against deep paths: one diagonal walk, a handful of steps."""
    chain = "/".join(["**", "a"] * 31 + ["z"])
    deep = "/".join(["a"] * MAX_SEGMENTS)
    for a, b, expected in [
        (chain, deep, True),  # the first `**` absorbs the rest
        ("b/" + chain, deep, False),
        ("/".join(["*"] * 63 + ["b"]), deep, False),
        ("/".join(["*"] * 63 + ["b"]), "/".join(["a"] * 63 + ["c"]), False),
        ("/".join(["*"] * 62 + ["**", "b"]), deep, True),
    ]:
        assert normalize(a) and normalize(b)
        assert overlaps(a, b) is expected and overlaps(b, a) is expected
        assert _scope_lines(lambda a=a, b=b: overlaps(a, b)) <= 40 * MAX_SEGMENTS + 400  # type: ignore[misc]


def _wide_glob(seed: int) -> str:
    """A 255-character glob with 32 wildcards: stars, `?` and classes of scattered characters (many
    elementary intervals), then literal characters up to the segment limit."""
    out, wildcards = "*", 1
    k = 0
    while wildcards + 2 <= MAX_WILDCARDS:
        body = "".join(chr(0x100 + 3 * ((seed * 7 + k * 5 + i * 11) % 500)) for i in range(5)) + ".a"
        out += ("[!" if k % 2 else "[") + body + "]" + ("*" if k % 3 == 0 else "?")
        wildcards += 2
        k += 1
    return (out + "ab." * MAX_SEGMENT_CHARS)[:MAX_SEGMENT_CHARS]


def test_long_globs_against_each_other() -> None:
    """Two maximal glob segments meet in work bounded by their sizes, never their combinations."""
    x, y = _wide_glob(1), _wide_glob(2) + "/q"
    assert normalize(x) and normalize(y)
    lines = _scope_lines(lambda: overlaps(x + "/p", y))
    assert lines <= 255 * 20 + 32 * 700 * 3 + 2 * 255 * 10  # rows, class scans of the intervals, compiles


def test_many_entry_claims_run_out_of_budget() -> None:
    """256 hostile entries against 256: the check stops at its Budget, however warm the caches."""
    held = ["/".join(f"*[a{chr(0x100 + k)}{chr(0x200 + i)}]*" for i in range(60)) + "/zz" for k in range(256)]
    mine = ["/".join(f"{k:03d}{i:02d}aaaaaaaaa" for i in range(60)) + "/END" for k in range(256)]
    for p in held + mine:
        normalize(p)
    idx: ScopeIndex[str] = ScopeIndex()
    idx.add("hostile", held)
    for _ in range(2):  # the second time with every segment pair memoized: the same outcome
        budget = Budget(MAX_CHECK_STEPS)
        with pytest.raises(TooCostly) as info:
            idx.conflicts(mine, budget=budget)
        assert info.value.limit == MAX_CHECK_STEPS and budget.left < 0
    with pytest.raises(TooCostly):
        overlapping(held, mine, Budget(MAX_CHECK_STEPS))
    idx.add("hostile", held[:4])
    assert idx.conflicts(mine[:4], budget=Budget(MAX_CHECK_STEPS)) == []  # a few entries are affordable


def test_budget_spent_depends_on_the_scopes_only() -> None:
    """The steps a check costs are the same with cold and warm caches; ordinary checks cost little."""
    idx: ScopeIndex[int] = ScopeIndex()
    idx.add(1, ["src/api/", "docs/*.md", "**/*.lock"])
    idx.add(2, ["tests/test_*.py", "src/[a-m]*/x.py"])

    def spent() -> int:
        budget = Budget(MAX_CHECK_STEPS)
        idx.conflicts(["src/api/x.py", "docs/guide.md", "tests/*", "src/*.py"], budget=budget)
        return budget.limit - budget.left

    _scope_lines(lambda: None)  # clears the caches
    cold = spent()
    assert spent() == cold and 0 < cold < 500


# --------------------------------------------------------------------------- concrete paths (the git guard)


@pytest.mark.parametrize(
    ("entry", "path", "expected"),
    [
        ("src", "src/a.py", True),
        ("src/api", "src", False),  # the scopes overlap, but the file `src` is not inside `src/api`
        ("**/x", "a/b", False),  # overlaps `a/b` as a scope (`a/b/x`), covers no file `a/b`
        ("**/x", "a/x/y", True),
        ("**/x", "x", True),
        (".", "any/where", True),
        ("src/*.py", "src/a.py", True),
        ("src/*.py", "src/a/b.py", False),
        ("src/**/t/*.py", "src/t/a.py", True),
        ("src/**/t/*.py", "src/x/y/t/a.pyc", False),
        ("*", "a*b", True),  # a concrete path is taken literally
        ("a[b]", "a[b]", False),  # the entry is a glob matching `ab`, not the file named `a[b]`
        ("a[b]", "ab", True),
        ("[.]", "x", False),  # covers nothing
    ],
)
def test_covers_table(entry: str, path: str, expected: bool) -> None:
    """An entry covers a file when it matches a prefix of the file's path, segment by segment."""
    assert covers(entry, path) is expected


@pytest.mark.parametrize(
    "path", ["", "/a", "a//b", "./a", "a/../b", "a/", "a\nb", "x" * 4097, "a/" + "b" * 256]
)
def test_concrete_rejects(path: str) -> None:
    """A concrete path is relative and plain, with no control characters, within the length limits."""
    with pytest.raises(BadScope):
        concrete(path)


@settings(max_examples=60, deadline=None)
@given(patterns())
def test_covers_matches_oracle(a: str) -> None:
    """covers agrees with the brute-force oracle on every path of the universe."""
    assert {p for p in UNIVERSE if covers(a, p)} == _covered(a)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.integers(0, 9), st.lists(index_patterns, min_size=1, max_size=3), max_size=10),
    st.lists(st.sampled_from(["a", "b", "ab", "x.py", "a.", "c"]), min_size=1, max_size=5),
)
def test_index_covering_matches_brute_force(claims: dict[int, list[str]], segs: list[str]) -> None:
    """ScopeIndex.covering returns exactly the entries that cover the path, by brute force."""
    idx: ScopeIndex[int] = ScopeIndex()
    for key, paths in claims.items():
        idx.add(key, paths)
    path = "/".join(segs)
    expected = [
        (key, e)
        for key, paths in claims.items()
        for e in dict.fromkeys(normalize(p) for p in paths)
        if covers(e, path)
    ]
    assert Counter(idx.covering(concrete(path), Budget())) == Counter(expected)


def test_covering_runs_on_a_budget() -> None:
    """Many glob entries against a deep path run out of a small budget; an ordinary check costs little."""
    idx: ScopeIndex[int] = ScopeIndex()
    idx.add(1, [f"**/{'*a' * 16}{k}" for k in range(200)])
    deep = concrete("/".join(["a" * 200] * 20))
    with pytest.raises(TooCostly):
        idx.covering(deep, Budget(10_000))
    idx.add(2, ["src/api", "docs/*.md"])
    budget = Budget(MAX_CHECK_STEPS)
    assert idx.covering(concrete("docs/guide.md"), budget) == [(2, "docs/*.md")]

"""Tests for hub.core.scopes: normalization, exact overlap of path/dir/glob entries, ScopeIndex."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.core.scopes import BadScope, ScopeIndex, normalize, overlapping, overlaps

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

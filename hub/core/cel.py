"""CEL conditions over a room's context: compile once (with static checks and read paths), evaluate often."""

from __future__ import annotations

import datetime as _dt
import importlib
import operator
import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NamedTuple, NoReturn, Protocol

__all__ = [
    "MAX_COMPREHENSION_DEPTH",
    "MAX_DEPTH",
    "MAX_EXPRESSION_LENGTH",
    "MAX_RESULT_VALUES",
    "native",
    "REFERENCE",
    "ROOTS",
    "BadExpression",
    "Bound",
    "CelCppEngine",
    "CelRustEngine",
    "CelpyEngine",
    "Compiled",
    "Engine",
    "EvalError",
    "bind",
    "compile",
    "equality",
    "evaluate",
    "is_true",
    "value_or_none",
    "outline",
    "paths",
    "SubExpression",
]

# Semantics (identical for every engine; NATIVE and REFERENCE are differential-tested against each other):
#
# * Context values are plain JSON-like data: dict (str keys), list, str, int, float, bool, None.  They are
#   presented to CEL as they are: int -> int (64-bit; 2**63..2**64-1 become uint on cel-cpp, larger is an
#   EvalError), float -> double, bool -> bool (never a number), None -> null.  Integral floats are NOT turned
#   into ints (that would need a walk over the whole context on every evaluation).
# * Numeric typing: comparisons (== != < <= > >= and `in`) are heterogeneous, as in the current CEL spec:
#   int, uint and double compare by numeric value, so `turn == 2`, `turn == 2.0`, `score > 40.5` and
#   `1 in [1.0]` all do what users expect, and values of unrelated types are simply unequal (`1 == "1"` is
#   false, `true == 1` is false).  Ordering across unrelated types (`1 < "a"`) is an EvalError.  Arithmetic
#   is strict CEL: both operands must have the same type, so `turn + 1.5` is an EvalError; write
#   `double(turn) + 1.5`.  int overflow and int division/modulo by zero are EvalErrors; double division by
#   zero gives inf/nan.  cel-cpp implements this natively; celpy 0.5 predates heterogeneous equality, so the
#   REFERENCE engine overrides its ==, !=, <, <=, >, >= and `in` with the spec rules (`_celpy_functions`).
# * A missing key (`state._shared.nope`) is an EvalError; `has(state._shared.nope)` is false.  `&&` and `||`
#   absorb an error when the other side decides (`state.nope || true` is true), `!` and `?:` do not.
# * A condition holds only when it evaluates to exactly `True` (see `is_true`); errors and non-bool values
#   never hold.
# * Dialect (checked by our own parser before any engine sees the text, so all engines accept the same
#   language): names are the five roots, `now` (the shell's clock, a double), comprehension variables and
#   the type names; functions are the CEL standard library (no extensions); `!!x` / `--x` are rejected
#   (native engines fold them away, turning `!!1` into 1); message construction, `.?` optional syntax and leading-dot names are rejected.
# * Performance: evaluate() with a plain mapping hands the engine only the slice of the context under
#   Compiled.reads (new dicts along the constant paths, the original objects at their ends), so the cost
#   does not grow with the room; this relies on Compiled.paths never missing a read (property-tested).
#   cel-cpp does ~100k evals/s per expression on a 50-key room (bench/cel.py), cel-rust is similar for field
#   reads but 4x slower when a whole root is read (it converts eagerly), celpy ~2-5k.  The native engine
#   evaluates the common shapes (`path <op> literal`, `&&`/`||`/`!` of such) in Python instead, with its own
#   results, ≈ 1 µs each (`_fast`, below).
# * Cost guards: at most MAX_EXPRESSION_LENGTH characters, syntactic depth MAX_DEPTH (cel-cpp itself stops
#   at 32), and comprehension macros (all/exists/exists_one/map/filter) nested at most
#   MAX_COMPREHENSION_DEPTH deep inside each other's bodies, so one evaluation visits at most
#   O(n ** MAX_COMPREHENSION_DEPTH) elements for collections of size n.  A result holds at most
#   MAX_RESULT_VALUES values (list items and map entries, counted as they are converted), else EvalError:
#   `[state, state, ...]` or views doubling one another cannot turn a small room into gigabytes.
#
# Known engine differences (the differential test keeps its generator away from them; all are celpy or
# cel-rust bugs, not choices of ours):
# * celpy: `string(1.0)` is "1.0" (cel-cpp "1") and `string(true)` is "True"; `size(null)` is 0; mixed
#   int/double arithmetic is partly accepted (`2.0 + 1` is 3.0, `2 / 2.0` is 1); `has(a.b.c)` is false where
#   a.b is missing or not a map (cel-cpp: EvalError); strings can be indexed (`"abc"[0]`) and iterated by
#   macros, lists accept negative indexes, `1 && true` is 1 (all EvalErrors in cel-cpp); an error inside a
#   map()/filter()/exists_one() body escapes `&&`/`||` absorption (`[0].map(x, state.nope) == [] && false`
#   is an EvalError, cel-cpp: false); a string made by `+` has no methods (`("a" + "b").contains("b")` is
#   an EvalError); doubles are not accepted as list indexes or map keys (cel-cpp: `l[0.0]` works); no
#   three-argument `map(x, p, t)`; no trailing commas in list/map literals; a newline inside triple-quoted
#   strings is dropped; unknown escapes such as "\?" keep the backslash; context ints outside int64 are an
#   EvalError.
# * cel-cpp iterates maps in its own order, not insertion order: `tasks.map(t, t)` may list keys in a
#   different order than celpy (CEL leaves map order unspecified).
# * cel-rust (CelRustEngine, benchmarked only): `size("é")` counts UTF-8 bytes; `string(bool)` is missing;
#   `int` evaluates to the string "int".  It converts everything it is given eagerly: ~2k evals/s when
#   handed a whole 50-key room (cel-cpp ~40k, converting lazily), and 4x slower than cel-cpp on a sliced
#   context when an expression reads a whole root.

ROOTS: frozenset[str] = frozenset({"state", "agents", "messages", "claims", "tasks", "now"})
MAX_EXPRESSION_LENGTH = 4096
MAX_DEPTH = 24
MAX_COMPREHENSION_DEPTH = 2
MAX_RESULT_VALUES = 100_000

# fmt: off
_TYPE_NAMES = frozenset({"int", "uint", "double", "bool", "string", "bytes", "list", "map", "null_type", "type"})
_GLOBAL_FUNCTIONS = frozenset({
    "size", "int", "uint", "double", "string", "bytes", "bool", "dyn", "type", "duration", "timestamp", "matches",
})
_MEMBER_FUNCTIONS = frozenset({
    "size", "contains", "startsWith", "endsWith", "matches", "getDate", "getDayOfMonth", "getDayOfWeek",
    "getDayOfYear", "getFullYear", "getHours", "getMilliseconds", "getMinutes", "getMonth", "getSeconds",
})
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_RESERVED = frozenset({
    "as", "break", "const", "continue", "else", "for", "function", "if", "import", "let", "loop", "package",
    "namespace", "return", "var", "void", "while",
})
# fmt: on


class BadExpression(ValueError):
    """The expression does not compile: syntax, unknown name or function, or a cost limit."""

    def __init__(self, expression: str, reason: str, position: int | None = None) -> None:
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"{reason}{where}")
        self.expression = expression
        self.reason = reason
        self.position = position


class EvalError(Exception):
    """Evaluation failed (missing key, type mismatch, overflow, division by zero...)."""


def is_true(value: Any) -> bool:
    """Whether a condition's result holds: only exactly `True` does (not 1, "yes", [x] or an error)."""
    return value is True


class Compiled:
    """A compiled expression: its source, the context paths it reads, and the engine's program (and its fast
    path, when the expression is in the subset `_fast` evaluates in Python)."""

    __slots__ = ("engine", "fast", "paths", "program", "reads", "roots", "source")

    def __init__(
        self,
        source: str,
        paths: frozenset[tuple[str, ...]],
        engine: Engine,
        program: Any,
        fast: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self.source = source
        self.paths = paths
        self.engine = engine
        self.program = program
        self.fast = fast
        self.roots = tuple(sorted({p[0] for p in paths}))  # the roots it reads (a tuple: smaller than a set)
        # The paths no other path is a prefix of: the slice of a context that evaluation needs.
        self.reads = tuple(sorted(p for p in paths if not any(q == p[: len(q)] and q != p for q in paths)))

    def __repr__(self) -> str:
        return f"Compiled({self.source!r}, engine={self.engine.name!r})"


class Bound:
    """A context prepared once for one engine, to evaluate many expressions against.

    Evaluating with a plain mapping converts only the slice the expression reads (Compiled.reads), which
    is usually fastest.  A Bound converts whole roots once (cel-cpp: a root on its first read; cel-rust and
    celpy: everything at bind) and caches them: better when many expressions read big roots wholesale
    (``tasks.exists(...)``).  It is a snapshot: bind again after the context changes.
    """

    __slots__ = ("context", "engine", "native")

    def __init__(self, engine: Engine, context: Mapping[str, Any], native: Any) -> None:
        self.engine = engine
        self.context = context
        self.native = native


class Engine(Protocol):
    """A CEL implementation behind the hub's API."""

    name: str

    def compile(self, expr: str) -> Compiled:
        """Parse, check and compile `expr`; raise BadExpression."""
        ...

    def bind(self, context: Mapping[str, Any]) -> Bound:
        """Prepare `context` for several evaluations."""
        ...

    def evaluate(self, compiled: Compiled, context: Mapping[str, Any] | Bound) -> Any:
        """Evaluate to a plain Python value; raise EvalError."""
        ...


# --------------------------------------------------------------------------------------------- lexer

_TOKEN = re.compile(
    r"""
    (?P<ws>(?:[ \t\n\r\f]+|//[^\n]*)+)
  | (?P<float>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\.\d+(?:[eE][+-]?\d+)?)
  | (?P<int>0[xX][0-9a-fA-F]+[uU]?|\d+[uU]?)
  | (?P<str>(?:[bB][rR]?|[rR])?(?:'''|\"\"\"|'|"))
  | (?P<ident>[_a-zA-Z][_a-zA-Z0-9]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[<>+\-*/%!?:.,()\[\]{}])
    """,
    re.VERBOSE,
)
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "`": "`",
    "?": "?",
}
_HEX_ESCAPES = {"x": 2, "X": 2, "u": 4, "U": 8}


class _Tok:
    __slots__ = ("kind", "pos", "text", "value")

    def __init__(self, kind: str, text: str, pos: int, value: Any = None) -> None:
        self.kind = kind  # "ident", "int", "uint", "float", "string", "bytes", "op", "eof"
        self.text = text
        self.pos = pos
        self.value = value


def _scan_string(
    src: str, start: int, prefix_len: int, quote: str, fail: Callable[..., NoReturn]
) -> tuple[Any, int]:
    """Scan a string/bytes literal whose quote starts at `start + prefix_len`; return (value, end)."""
    prefix = src[start : start + prefix_len].lower()
    raw, is_bytes = "r" in prefix, "b" in prefix
    i = start + prefix_len + len(quote)
    out: list[str] = []
    while True:
        if i >= len(src):
            fail("unterminated string", start)
        if src.startswith(quote, i):
            i += len(quote)
            break
        ch = src[i]
        if ch in "\r\n" and len(quote) == 1:
            fail("newline in string (use a triple-quoted string)", i)
        if ch == "\\" and not raw:
            esc = src[i + 1 : i + 2]
            if esc in _SIMPLE_ESCAPES:
                out.append(_SIMPLE_ESCAPES[esc])
                i += 2
            elif esc in _HEX_ESCAPES:
                digits = src[i + 2 : i + 2 + _HEX_ESCAPES[esc]]
                if len(digits) != _HEX_ESCAPES[esc] or not all(c in "0123456789abcdefABCDEF" for c in digits):
                    fail("invalid escape sequence", i)
                if is_bytes and esc in "xX":
                    out.append(chr(int(digits, 16)))  # a raw byte value, kept as a code point < 256
                else:
                    out.append(chr(int(digits, 16)) if int(digits, 16) < 0x110000 else fail("bad escape", i))
                i += 2 + len(digits)
            elif esc in "0123" and re.fullmatch(r"[0-3][0-7][0-7]", src[i + 1 : i + 4]):
                out.append(chr(int(src[i + 1 : i + 4], 8)))
                i += 4
            else:
                fail("invalid escape sequence", i)
        else:
            out.append(ch)
            i += 1
    text = "".join(out)
    return (("bytes", text) if is_bytes else ("string", text)), i


def _tokenize(src: str, fail: Callable[..., NoReturn]) -> list[_Tok]:
    tokens: list[_Tok] = []
    i, n = 0, len(src)
    while i < n:
        m = _TOKEN.match(src, i)
        if m is None:
            fail(f"unexpected character {src[i]!r}", i)
        kind = m.lastgroup
        if kind == "ws":
            i = m.end()
            continue
        if kind == "str":
            quote = m.group().lstrip("bBrR")
            (skind, value), end = _scan_string(src, i, len(m.group()) - len(quote), quote, fail)
            tokens.append(_Tok(skind, src[i:end], i, value))
            i = end
            continue
        text = m.group()
        if kind == "int":
            digits = text.rstrip("uU")
            value = int(digits[2:], 16) if digits[:2] in ("0x", "0X") else int(digits)
            tokens.append(_Tok("uint" if digits != text else "int", text, i, value))
        elif kind == "float":
            tokens.append(_Tok("float", text, i, float(text)))
        elif kind == "ident":
            if text in _RESERVED:
                fail(f"reserved word {text!r}", i)
            if text in ("true", "false", "null", "in"):
                tokens.append(_Tok("op", text, i))
            else:
                tokens.append(_Tok("ident", text, i, text))
        else:
            tokens.append(_Tok("op", text, i))
        i = m.end()
    tokens.append(_Tok("eof", "", n))
    return tokens


# -------------------------------------------------------------------------------------------- parser


class _Node:
    """AST node. kind: ident, select, has, index, call, lit, list, map, op, comp."""

    __slots__ = ("depth", "kids", "kind", "pos", "value")

    def __init__(self, kind: str, pos: int, value: Any = None, kids: tuple[_Node, ...] = ()) -> None:
        self.kind = kind
        self.pos = pos
        self.value = value
        self.kids = kids
        self.depth: int = 1 + max((k.depth for k in kids), default=0)


_RELOPS = frozenset({"<", "<=", ">", ">=", "==", "!=", "in"})


class _Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.toks = _tokenize(src, self.fail)
        self.i = 0
        self.nesting = 0

    def fail(self, reason: str, pos: int | None) -> NoReturn:
        raise BadExpression(self.src, reason, pos)

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def at(self, text: str) -> bool:
        tok = self.toks[self.i]
        return tok.kind == "op" and tok.text == text

    def take(self, text: str) -> _Tok:
        tok = self.toks[self.i]
        if tok.kind != "op" or tok.text != text:
            self.unexpected(f"expected {text!r}")
        self.i += 1
        return tok

    def unexpected(self, hint: str = "") -> NoReturn:
        tok = self.tok
        what = "end of expression" if tok.kind == "eof" else repr(tok.text)
        self.fail(f"unexpected {what}" + (f" ({hint})" if hint else ""), tok.pos)

    def node(self, kind: str, pos: int, value: Any = None, kids: tuple[_Node, ...] = ()) -> _Node:
        node = _Node(kind, pos, value, kids)
        if node.depth > MAX_DEPTH:
            self.fail(f"expression nested deeper than {MAX_DEPTH}", pos)
        return node

    def parse(self) -> _Node:
        if self.tok.kind == "eof":
            self.fail("empty expression", 0)
        node = self.expr()
        if self.tok.kind != "eof":
            self.unexpected()
        return node

    def expr(self) -> _Node:
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            self.fail(f"expression nested deeper than {MAX_DEPTH}", self.tok.pos)
        cond = self.logical("||", self.and_)
        if self.at("?"):
            pos = self.take("?").pos
            yes = self.logical("||", self.and_)
            self.take(":")
            no = self.expr()
            cond = self.node("op", pos, "?:", (cond, yes, no))
        self.nesting -= 1
        return cond

    def and_(self) -> _Node:
        return self.logical("&&", self.relation)

    def logical(self, op: str, sub: Callable[[], _Node]) -> _Node:
        # n-ary, like the balanced tree the native parser builds: a long chain is not deep.
        first = sub()
        if not self.at(op):
            return first
        pos, kids = self.tok.pos, [first]
        while self.at(op):
            self.i += 1
            kids.append(sub())
        return self.node("op", pos, op, tuple(kids))

    def binary(self, ops: frozenset[str] | tuple[str, ...], sub: Callable[[], _Node]) -> _Node:
        left = sub()
        while self.tok.kind == "op" and self.tok.text in ops:
            tok = self.tok
            self.i += 1
            left = self.node("op", tok.pos, tok.text, (left, sub()))
        return left

    def relation(self) -> _Node:
        return self.binary(_RELOPS, self.addition)

    def addition(self) -> _Node:
        return self.binary(("+", "-"), self.multiplication)

    def multiplication(self) -> _Node:
        return self.binary(("*", "/", "%"), self.unary)

    def unary(self) -> _Node:
        if self.at("!") or self.at("-"):
            tok = self.tok
            self.i += 1
            if self.at(tok.text):
                self.fail(f"repeated unary {tok.text!r} (use parentheses)", self.tok.pos)
            if tok.text == "-" and self.tok.kind in ("int", "float") and not self.followed_by_member():
                lit = self.tok
                self.i += 1
                return self.node("lit", tok.pos, ("int" if lit.kind == "int" else "float", -lit.value))
            return self.node("op", tok.pos, tok.text + "_", (self.member(),))
        return self.member()

    def followed_by_member(self) -> bool:
        nxt = self.toks[self.i + 1]
        return nxt.kind == "op" and nxt.text in (".", "[")

    def member(self) -> _Node:
        node = self.primary()
        while True:
            if self.at("."):
                self.i += 1
                tok = self.tok
                if tok.kind != "ident":
                    self.unexpected("expected a field name")
                self.i += 1
                if self.at("("):
                    node = self.call(tok, node)
                else:
                    node = self.node("select", tok.pos, tok.value, (node,))
            elif self.at("["):
                pos = self.take("[").pos
                index = self.expr()
                self.take("]")
                node = self.node("index", pos, None, (node, index))
            else:
                return node

    def args(self, close: str) -> list[_Node]:
        out: list[_Node] = []
        while not self.at(close):
            out.append(self.expr())
            if not self.at(close):
                self.take(",")
        self.take(close)
        return out

    def call(self, name: _Tok, target: _Node | None) -> _Node:
        self.take("(")
        args = self.args(")")
        fname = name.value
        if target is None:
            if fname == "has":
                if len(args) != 1 or args[0].kind != "select":
                    self.fail("has() takes one field selection, like has(state.x)", name.pos)
                sel = args[0]
                return self.node("has", sel.pos, sel.value, sel.kids)
            if fname not in _GLOBAL_FUNCTIONS:
                self.fail(f"unknown function {fname!r}", name.pos)
            return self.node("call", name.pos, fname, tuple(args))
        if fname in _MACROS:
            arity = (2, 3) if fname == "map" else (2,)
            if len(args) not in arity or args[0].kind != "ident":
                self.fail(f"{fname}() takes a variable name and an expression", name.pos)
            return self.node("comp", name.pos, (fname, args[0].value), (target, *args[1:]))
        if fname not in _MEMBER_FUNCTIONS:
            self.fail(f"unknown function {fname!r}", name.pos)
        return self.node("call", name.pos, "." + fname, (target, *args))

    def primary(self) -> _Node:
        tok = self.tok
        if tok.kind == "ident":
            self.i += 1
            if self.at("("):
                return self.call(tok, None)
            if self.at("{"):
                self.fail("message construction is not supported", self.tok.pos)
            return self.node("ident", tok.pos, tok.value)
        if tok.kind in ("int", "uint", "float", "string", "bytes"):
            self.i += 1
            return self.node("lit", tok.pos, (tok.kind, tok.value))
        if tok.kind == "op":
            if tok.text in ("true", "false", "null"):
                self.i += 1
                return self.node(
                    "lit", tok.pos, ("bool" if tok.text != "null" else "null", tok.text == "true")
                )
            if tok.text == "(":
                self.i += 1
                inner = self.expr()
                self.take(")")
                return inner
            if tok.text == "[":
                self.i += 1
                return self.node("list", tok.pos, None, tuple(self.args("]")))
            if tok.text == "{":
                self.i += 1
                kids: list[_Node] = []
                while not self.at("}"):
                    kids.append(self.expr())
                    self.take(":")
                    kids.append(self.expr())
                    if not self.at("}"):
                        self.take(",")
                self.take("}")
                return self.node("map", tok.pos, None, tuple(kids))
            if tok.text == ".":
                self.fail("leading '.' names are not supported", tok.pos)
        return self.unexpected()


def _const_path(node: _Node, bound: frozenset[str]) -> tuple[str, ...] | None:
    """The constant selector chain of `node` from an unbound root, or None."""
    parts: list[str] = []
    while True:
        if node.kind in ("select", "has"):
            parts.append(node.value)
            node = node.kids[0]
        elif node.kind == "index" and node.kids[1].kind == "lit" and node.kids[1].value[0] == "string":
            parts.append(node.kids[1].value[1])
            node = node.kids[0]
        elif node.kind == "ident" and node.value in ROOTS and node.value not in bound:
            parts.append(node.value)
            return tuple(reversed(parts))
        else:
            return None


def _analyze(src: str) -> tuple[_Node, frozenset[tuple[str, ...]]]:
    """Parse `src`, check names/functions/limits; return its tree and the context paths it reads."""
    if not isinstance(src, str):
        raise BadExpression(str(src), "expression must be a string")
    if len(src) > MAX_EXPRESSION_LENGTH:
        raise BadExpression(src, f"expression longer than {MAX_EXPRESSION_LENGTH} characters", None)
    root = _Parser(src).parse()
    found: set[tuple[str, ...]] = set()
    stack: list[tuple[_Node, frozenset[str], int]] = [(root, frozenset(), 0)]
    while stack:
        node, bound, depth = stack.pop()
        kind = node.kind
        if kind in ("select", "has", "index", "ident"):
            path = _const_path(node, bound)
            if path is not None:
                found.add(path)
                continue
            if kind == "ident":
                if node.value not in bound and node.value not in _TYPE_NAMES:
                    raise BadExpression(src, f"unknown name {node.value!r}", node.pos)
                continue
        if kind == "comp":
            if depth + 1 > MAX_COMPREHENSION_DEPTH:
                raise BadExpression(
                    src, f"comprehensions nested deeper than {MAX_COMPREHENSION_DEPTH}", node.pos
                )
            stack.append((node.kids[0], bound, depth))
            inner = bound | {node.value[1]}
            stack.extend((kid, inner, depth + 1) for kid in node.kids[1:])
            continue
        stack.extend((kid, bound, depth) for kid in node.kids)
    return root, frozenset(found)


def paths(expr: str) -> frozenset[tuple[str, ...]]:
    """The context paths `expr` reads (see Compiled.paths), without compiling it for an engine."""
    return _analyze(expr)[1]


# ------------------------------------------------------------------------ sub-expressions (`synapse why`)


class SubExpression(NamedTuple):
    """One sub-expression of an outline: its source text, nesting depth, its parent's index in the outline,
    and its operator when it combines or compares others (`&&`, `||`, `!_`, a relation; None: a leaf)."""

    source: str
    depth: int
    parent: int | None
    op: str | None


class _Outliner(_Parser):
    """The parser, noting the source span of each operand it builds (for `outline`)."""

    def __init__(self, src: str) -> None:
        super().__init__(src)
        self.spans: dict[int, tuple[int, int]] = {}

    def _spanning(self, sub: Callable[[], _Node]) -> Callable[[], _Node]:
        def run() -> _Node:
            first = self.tok.pos
            node = sub()
            last = self.toks[self.i - 1]
            self.spans[id(node)] = (first, last.pos + len(last.text))
            return node

        return run

    def logical(self, op: str, sub: Callable[[], _Node]) -> _Node:
        return super().logical(op, self._spanning(sub))

    def binary(self, ops: frozenset[str] | tuple[str, ...], sub: Callable[[], _Node]) -> _Node:
        return super().binary(ops, self._spanning(sub))

    def member(self) -> _Node:
        return self._spanning(super().member)()


_COMBINERS = frozenset({"&&", "||", "!_"})


def outline(expr: str, limit: int) -> tuple[list[SubExpression], bool]:
    """The sub-expressions of `expr` down through `&&`, `||`, `!` and the non-literal operands of relations
    (not into calls or comprehensions, whose variables would be unbound), depth first, at most `limit`;
    each one's source compiles on its own. The flag says whether some were left out. Raise BadExpression."""
    _analyze(expr)
    parser = _Outliner(expr)
    root = parser.parse()
    whole = (0, len(expr))
    parts: list[SubExpression] = []
    stack: list[tuple[_Node, int, int | None]] = [(root, 0, None)]
    while stack:
        if len(parts) >= limit:
            return parts, True
        node, depth, parent = stack.pop()
        first, end = whole if parent is None else parser.spans.get(id(node), whole)
        op = node.value if node.kind == "op" and (node.value in _COMBINERS or node.value in _RELOPS) else None
        parts.append(SubExpression(expr[first:end].strip(), depth, parent, op))
        if op is None:
            continue
        kids = node.kids if op in _COMBINERS else tuple(k for k in node.kids if k.kind != "lit")
        here = len(parts) - 1
        stack.extend((kid, depth + 1, here) for kid in reversed(kids) if id(kid) in parser.spans)
    return parts, False


# ------------------------------------------------------------------------------------------------ fast path
#
# Conditions are mostly `path <op> literal` and `&&`/`||`/`!` of such (`state._shared.k3 == 2`), and cel-cpp
# spends ≈ 9 µs on each (the call, converting the slice and the result).  `_fast` gives that subset an
# evaluator in plain Python with cel-cpp's results (differential-tested against cel-cpp and celpy):
#
# * Operands: a path of field selections and string-literal indexes from a root, or a null, bool, int, uint,
#   double or string literal (quoted, without escapes).  Relations == != < <= > >=, `&&` and `||`, `!`, and
#   a bare path or literal.  Anything else (`in`, arithmetic, calls, `?:`, has()) is left to the engine.
# * A value read is used only when cel-cpp converts it without surprise: null, bool, double, int in int64,
#   ASCII string.  Anything else (a list or map, a bigger int, a non-ASCII string: cel-cpp refuses a lone
#   surrogate with an error `||` does not absorb) hands the whole evaluation to the engine, as does a context
#   that is not a dict.
# * Equality: values of one type compare as in Python; int or uint against double compare as doubles (cel-cpp
#   converts the int: `9007199254740993 == 9007199254740992.0` holds); other pairs are unequal.  Ordering: the
#   same, but unrelated types and nulls are an error.
# * A missing key or root, a field of a non-map and a non-bool operand of `&&`, `||` or `!` are errors, which
#   `&&`/`||` absorb as CEL does.  Every operand is evaluated (no short cut leaves a value unchecked).  An
#   error result is handed to the engine too, for its own message.
# * Cost: ≈ 1 µs per evaluation in place of ≈ 9 (bench/profile_hub.py, conditions; bench/README.md).


class _Unsure(Exception):
    """A value the fast path does not vouch for: the whole evaluation goes to the engine."""


_ERR: Any = object()  # a CEL error inside a fast evaluation
_INT64 = (-(1 << 63), (1 << 63) - 1)
# An evaluator: a partial of one of the functions below (≈ 270 bytes per expression; closures took ≈ 900).
_Fast = Callable[[dict[str, Any]], Any]


def _read(path: tuple[str, ...], ctx: dict[str, Any]) -> Any:
    """The value at `path`, or _ERR (a missing key or root, a field of a non-map); raise _Unsure when the
    value (or the non-map) is not one cel-cpp takes as the same plain value."""
    v: Any = ctx
    found = True
    for key in path:
        if type(v) is not dict:
            found = False
            break
        v = v.get(key, _ERR)
    if v is _ERR:
        return v
    t = type(v)
    if (
        (t is int and _INT64[0] <= v <= _INT64[1])
        or t is float
        or t is bool
        or v is None
        or (t is str and v.isascii())
    ):
        return v if found else _ERR
    raise _Unsure


def _constant(value: Any, ctx: dict[str, Any]) -> Any:
    return value


def _path_literal(test: Callable[[Any, Any], Any], path: tuple[str, ...], b: Any, ctx: dict[str, Any]) -> Any:
    a = _read(path, ctx)
    return a if a is _ERR else test(a, b)


def _literal_path(test: Callable[[Any, Any], Any], a: Any, path: tuple[str, ...], ctx: dict[str, Any]) -> Any:
    b = _read(path, ctx)
    return b if b is _ERR else test(a, b)


def _path_path(
    test: Callable[[Any, Any], Any], left: tuple[str, ...], right: tuple[str, ...], ctx: dict[str, Any]
) -> Any:
    a, b = _read(left, ctx), _read(right, ctx)
    return _ERR if a is _ERR or b is _ERR else test(a, b)


def _not(kid: _Fast, ctx: dict[str, Any]) -> Any:
    v = kid(ctx)
    return False if v is True else (True if v is False else _ERR)


def _logical(decides: bool, kids: tuple[_Fast, ...], ctx: dict[str, Any]) -> Any:
    """`||` (decides: True) or `&&` (False) of `kids`, all evaluated."""
    result = not decides
    for v in [k(ctx) for k in kids]:
        if v is decides:
            return decides
        if v is not result:
            result = _ERR
    return result


def _equal(a: Any, b: Any) -> bool:
    ta, tb = type(a), type(b)
    if ta is tb:
        return bool(a == b)
    if (ta is int or ta is float) and (tb is int or tb is float):
        return float(a) == float(b)
    return False


def _not_equal(a: Any, b: Any) -> bool:
    return not _equal(a, b)


def _ordering(test: Callable[[Any, Any], bool]) -> Callable[[Any, Any], Any]:
    def rel(a: Any, b: Any) -> Any:
        ta, tb = type(a), type(b)
        if ta is tb and a is not None:
            return test(a, b)
        if (ta is int or ta is float) and (tb is int or tb is float):
            return test(float(a), float(b))
        return _ERR

    return rel


_TESTS: dict[str, Callable[[Any, Any], Any]] = {
    "==": _equal,
    "!=": _not_equal,
    "<": _ordering(operator.lt),
    "<=": _ordering(operator.le),
    ">": _ordering(operator.gt),
    ">=": _ordering(operator.ge),
}
_NO_LITERAL: Any = object()


def _literal(node: _Node, src: str) -> Any:
    """The value of a literal the fast path takes, else _NO_LITERAL."""
    if node.kind != "lit":
        return _NO_LITERAL
    kind, value = node.value
    if kind == "null":
        return None
    if kind in ("bool", "int", "uint", "float"):
        return value
    quote, n = src[node.pos], len(value)
    if kind == "string" and quote in "'\"" and src[node.pos + 1 : node.pos + 2 + n] == value + quote:
        return value if value.isascii() else _NO_LITERAL  # written as it is: no escapes, not raw
    return _NO_LITERAL


def _operand(node: _Node, src: str) -> tuple[tuple[str, ...] | None, Any]:
    """(path, _NO_LITERAL) for a path, (None, value) for a literal, (None, _NO_LITERAL) for anything else."""
    value = _literal(node, src)
    if value is _NO_LITERAL and node.kind in ("select", "index", "ident"):
        return _const_path(node, frozenset()), value
    return None, value


def _fast(node: _Node, src: str) -> _Fast | None:
    """An evaluator of `node` in the fast subset, or None: it returns the value, or _ERR where the engine
    must decide (an error, for its message), and raises _Unsure for a value it does not vouch for."""
    path, value = _operand(node, src)
    if path is not None:
        return partial(_read, path)
    if value is not _NO_LITERAL:
        return partial(_constant, value)
    if node.kind != "op":
        return None
    if node.value in _TESTS:
        test = _TESTS[node.value]
        (lpath, a), (rpath, b) = _operand(node.kids[0], src), _operand(node.kids[1], src)
        if lpath is not None and rpath is not None:
            return partial(_path_path, test, lpath, rpath)
        if lpath is not None and b is not _NO_LITERAL:
            return partial(_path_literal, test, lpath, b)
        if a is not _NO_LITERAL and rpath is not None:
            return partial(_literal_path, test, a, rpath)
        if a is not _NO_LITERAL and b is not _NO_LITERAL:
            return partial(_constant, test(a, b))
        return None
    maybe = [_fast(kid, src) for kid in node.kids]
    kids = tuple(k for k in maybe if k is not None)
    if len(kids) != len(maybe):
        return None
    if node.value == "!_":
        return partial(_not, kids[0])
    if node.value in ("&&", "||"):
        return partial(_logical, node.value == "||", kids)
    return None


# ------------------------------------------------------------------------------------------- engines

_ENGINE_POS = re.compile(r"<input>:(\d+):(\d+):")
_SCALARS = (bool, int, float, str, type(None))


class _Budget:
    """Values a result may still hold (MAX_RESULT_VALUES in all): counted before a list or map is converted."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_RESULT_VALUES

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise EvalError(f"result holds more than {MAX_RESULT_VALUES} values")


def _key(k: Any) -> Any:
    """A map key as JSON can carry it: CEL's bool keys become "true"/"false" (as int keys become text)."""
    if type(k) is bool:
        return "true" if k else "false"
    return k


def _engine_position(src: str, message: str) -> int | None:
    """Map an engine's '<input>:line:column:' (1-based) to a 0-based offset in `src`."""
    m = _ENGINE_POS.search(message)
    if m is None:
        return None
    line, col = int(m.group(1)), int(m.group(2))
    lines = src.split("\n")
    if not 1 <= line <= len(lines) or col < 1:
        return None
    return min(sum(len(x) + 1 for x in lines[: line - 1]) + col - 1, len(src))


def _reason(exc: BaseException | str) -> str:
    """One line from an engine's message, without status prefixes or source excerpts."""
    if isinstance(exc, KeyError) and exc.args:
        return f"no such key: {exc.args[0]}"
    text = exc if isinstance(exc, str) else (str(exc.args[0]) if exc.args else type(exc).__name__)
    text = text.strip().split("\n")[0].strip()
    text = re.sub(r"^(?:[A-Z_]+: |<input>:\d+:\d+: )+", "", text)
    text = re.sub(r"\s*\[[A-Z_]+\]$", "", text)
    return text[:300] or type(exc).__name__


def _as_dict(context: Mapping[str, Any]) -> dict[str, Any]:
    if type(context) is dict:
        return context
    if not isinstance(context, Mapping):
        raise EvalError(f"context must be a mapping, not {type(context).__name__}")
    return dict(context)


def _slice(context: Mapping[str, Any], reads: tuple[tuple[str, ...], ...]) -> dict[str, Any]:
    """The part of `context` under `reads`: new dicts along each path, the original objects at its end.

    Sound because Compiled.paths never misses a read (property-tested): the engine sees the same values,
    missing keys and non-map values on every path the expression can take, and converts far less.
    """
    out: dict[str, Any] = {}
    for path in reads:
        src: Any = context
        dst = out
        last = len(path) - 1
        for i, key in enumerate(path):
            if key not in src:
                break
            value = src[key]
            if i == last or type(value) is not dict:
                dst[key] = value
                break
            src, dst = value, dst.setdefault(key, {})
    return out


class _EngineBase:
    """Shared front end: our parser checks the expression and extracts paths, then the engine compiles."""

    name = "?"
    fast_path = False  # whether compile() gives expressions of the fast subset a Python evaluator (`_fast`)

    def compile(self, expr: str) -> Compiled:
        """Parse, check and compile `expr`; raise BadExpression."""
        root, found = _analyze(expr)
        try:
            program = self._build(expr)
        except BadExpression:
            raise
        except Exception as exc:  # engines raise RuntimeError/ValueError/their own parse errors
            raise BadExpression(expr, _reason(exc), self._position(expr, exc)) from None
        return Compiled(expr, found, self, program, _fast(root, expr) if self.fast_path else None)

    def bind(self, context: Mapping[str, Any]) -> Bound:
        """Prepare `context` for several evaluations (a snapshot: bind again after it changes)."""
        context = _as_dict(context)
        try:
            return Bound(self, context, self._bind(context))
        except Exception as exc:
            raise EvalError(_reason(exc)) from None

    def evaluate(self, compiled: Compiled, context: Mapping[str, Any] | Bound) -> Any:
        """Evaluate to a plain Python value; raise EvalError on any failure."""
        if compiled.engine is not self:
            raise ValueError(f"{compiled!r} was compiled by another engine")
        fast = compiled.fast
        if fast is not None:
            plain = context.context if type(context) is Bound else context
            if type(plain) is dict:
                try:
                    value = fast(plain)
                except _Unsure:
                    value = _ERR
                if value is not _ERR:
                    return value
        try:
            if type(context) is Bound:
                if context.engine is self:
                    return self._run_bound(compiled.program, context.native)
                context = context.context
            if type(context) is not dict and not isinstance(context, Mapping):
                raise EvalError(f"context must be a mapping, not {type(context).__name__}")
            return self._run(compiled.program, _slice(context, compiled.reads))
        except EvalError:
            raise
        except RecursionError:
            raise EvalError("value nested too deeply") from None
        except Exception as exc:
            raise EvalError(_reason(exc)) from None

    def _position(self, expr: str, exc: Exception) -> int | None:
        return _engine_position(expr, str(exc))

    def _build(self, expr: str) -> Any:
        raise NotImplementedError

    def _bind(self, context: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _run(self, program: Any, context: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _run_bound(self, program: Any, native: Any) -> Any:
        raise NotImplementedError


def _pin_none() -> None:
    """Give None references enough for any uptime, unless it is immortal already (CPython 3.12 and later).

    cel-expr-python (0.1.3) drops one reference to None for every null it hands back (a null result, a null
    inside a list or map): left alone, None's count reaches zero after a few thousand nulls and the whole
    interpreter aborts ("deallocating None"), so one agent repeating `eval null` could stop the hub. Only
    None is affected (True, False, numbers and strings keep their counts; tests/core/test_cel.py checks).
    """
    import ctypes  # here, not at the top: only a hub that compiles a condition loads the engine (≈ 0.3 MB)

    count = ctypes.c_ssize_t.from_address(id(None))  # ob_refcnt, the first field of every CPython object
    if 0 < count.value < 1 << 31:  # a plain count, not an immortal object's marker
        count.value += 1 << 60


class CelCppEngine(_EngineBase):
    """cel-cpp through `cel-expr-python` (import `cel_expr_python.cel`); unchecked, dynamically typed.

    The engine converts a root of what it is given on first read, so an evaluation costs about the size of
    the context slice it reads; a Bound keeps converted roots across evaluations.
    """

    name = "cel-cpp"

    def __init__(self, fast: bool = True) -> None:
        """`fast`: evaluate expressions of the fast subset in Python (`_fast`, cel-cpp's semantics exactly)."""
        self.fast_path = fast
        cel = importlib.import_module("cel_expr_python.cel")
        _pin_none()
        self._env = cel.NewEnv(variables=dict.fromkeys(sorted(ROOTS), cel.Type.DYN))
        self._error = cel.Type.ERROR
        self._type_cls = cel.Type

    def _build(self, expr: str) -> Any:
        # disable_check: the context is dynamic, so type errors are runtime EvalErrors as in other engines.
        return self._env.compile(expr, disable_check=True)

    def _bind(self, context: dict[str, Any]) -> Any:
        return self._env.Activation(context)

    def _run(self, program: Any, context: dict[str, Any]) -> Any:
        return self._result(program.eval(data=context))

    def _run_bound(self, program: Any, native: Any) -> Any:
        return self._result(program.eval(native))

    def _result(self, value: Any) -> Any:
        if value.type() == self._error:
            raise EvalError(_reason(str(value.value())))
        v = value.value()  # a list or map comes one level at a time: its items are converted on demand
        if type(v) in _SCALARS:
            return v
        return self._plain(v, _Budget())

    def _plain(self, v: Any, budget: _Budget) -> Any:
        if type(v) in _SCALARS:
            return v
        if isinstance(v, list):
            budget.take(len(v))
            return [self._plain(x.value(), budget) for x in v]
        if isinstance(v, dict):
            budget.take(len(v))
            return {_key(k): self._plain(x.value(), budget) for k, x in v.items()}
        if isinstance(v, (bytes, bytearray)):
            return bytes(v)
        if isinstance(v, (_dt.datetime, _dt.timedelta)):
            return v
        if isinstance(v, self._type_cls):
            raise EvalError("expression evaluated to a type, not a value")
        raise EvalError(f"unsupported result type {type(v).__name__}")


class CelRustEngine(_EngineBase):
    """cel-rust through `common-expression-language` (import `cel`); the fallback, and benchmarked.

    The engine converts everything it is given up front: the slice on each evaluation, or the whole
    context once per Bound.
    """

    name = "cel-rust"

    def __init__(self) -> None:
        self._cel = importlib.import_module("cel")
        if not hasattr(self._cel, "Context"):
            raise ImportError("module 'cel' is not common-expression-language")

    def _build(self, expr: str) -> Any:
        return self._cel.compile(expr)

    def _bind(self, context: dict[str, Any]) -> Any:
        return self._cel.Context(context)

    def _run(self, program: Any, context: dict[str, Any]) -> Any:
        return _plain_python(program.execute(context))

    def _run_bound(self, program: Any, native: Any) -> Any:
        return _plain_python(program.execute(native))


def _plain_python(v: Any, bool_types: tuple[type, ...] = (bool,), budget: _Budget | None = None) -> Any:
    """Engine values (including subclasses of the Python builtins) as plain Python values."""
    if type(v) in _SCALARS:
        return v
    if budget is None:
        budget = _Budget()
    if isinstance(v, bool_types):
        return bool(v)
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, str):
        return str(v)
    if isinstance(v, (bytes, bytearray)):
        return bytes(v)
    if isinstance(v, (list, tuple)):
        budget.take(len(v))
        return [_plain_python(x, bool_types, budget) for x in v]
    if isinstance(v, Mapping):
        budget.take(len(v))
        return {
            _key(_plain_python(k, bool_types, budget)): _plain_python(x, bool_types, budget)
            for k, x in v.items()
        }
    if isinstance(v, _dt.datetime):
        return _dt.datetime(
            v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond, tzinfo=v.tzinfo
        )
    if isinstance(v, _dt.timedelta):
        return _dt.timedelta(days=v.days, seconds=v.seconds, microseconds=v.microseconds)
    if isinstance(v, type) or type(v).__name__ in ("TypeType", "Type"):
        raise EvalError("expression evaluated to a type, not a value")
    raise EvalError(f"unsupported result type {type(v).__name__}")


class CelpyEngine(_EngineBase):
    """celpy (`cel-python`), the pure-Python reference, with the spec's heterogeneous comparisons.

    celpy is imported on first use (slow import; it also raises the interpreter recursion limit to 2500).
    The slice is converted to celpy values on each evaluation (the whole context once per Bound).
    """

    name = "celpy"

    def __init__(self) -> None:
        self._env: Any = None

    def _load(self) -> None:
        celpy = importlib.import_module("celpy")
        self._celpy = celpy
        self._types = importlib.import_module("celpy.celtypes")
        self._eval_error = importlib.import_module("celpy.evaluation").CELEvalError
        self._functions = _celpy_functions(self._types, self._eval_error)
        self._env = celpy.Environment()

    def _position(self, expr: str, exc: Exception) -> int | None:
        line, column = getattr(exc, "line", None), getattr(exc, "column", None)
        if isinstance(line, int) and isinstance(column, int):
            return _engine_position(expr, f"<input>:{line}:{column}:")
        return None

    def _build(self, expr: str) -> Any:
        if self._env is None:
            self._load()
        return self._env.program(self._env.compile(expr), functions=self._functions)

    def _bind(self, context: dict[str, Any]) -> Any:
        if self._env is None:
            self._load()
        return {k: self._celpy.json_to_cel(v) for k, v in context.items()}

    def _run(self, program: Any, context: dict[str, Any]) -> Any:
        return self._run_bound(program, self._bind(context))

    def _run_bound(self, program: Any, native: Any) -> Any:
        value = program.evaluate(native)
        if isinstance(value, self._eval_error):
            raise EvalError(_reason(value))
        return _plain_python(value, (bool, self._types.BoolType))


def _celpy_functions(ct: Any, eval_error: type) -> dict[str, Callable[..., Any]]:
    """Heterogeneous ==, !=, <, <=, >, >=, `in` for celpy (celpy 0.5 has strict, pre-2022 equality)."""

    def kind(v: Any) -> str:
        if v is None:
            return "null"
        if isinstance(v, (bool, ct.BoolType)):
            return "bool"
        if isinstance(v, (int, float)):
            return "num"
        if isinstance(v, str):
            return "string"
        if isinstance(v, (bytes, bytearray)):
            return "bytes"
        if isinstance(v, list):
            return "list"
        if isinstance(v, dict):
            return "map"
        if isinstance(v, _dt.datetime):
            return "timestamp"
        if isinstance(v, _dt.timedelta):
            return "duration"
        return "other"

    def num(v: Any) -> int | float:
        return float(v) if isinstance(v, float) else int(v)

    def eq(a: Any, b: Any) -> bool:
        ka, kb = kind(a), kind(b)
        if ka != kb:
            return False
        if ka == "num":
            return num(a) == num(b)
        if ka == "list":
            return len(a) == len(b) and all(eq(x, y) for x, y in zip(a, b, strict=True))
        if ka == "map":
            if len(a) != len(b):
                return False
            for k, v in a.items():
                match = [w for kk, w in b.items() if eq(k, kk)]
                if not match or not eq(v, match[0]):
                    return False
            return True
        if ka == "bool":
            return bool(a) == bool(b)
        if ka == "null":
            return True
        if ka == "string":
            return str(a) == str(b)
        if ka == "bytes":
            return bytes(a) == bytes(b)
        return bool(a == b)

    def order(a: Any, b: Any) -> int:
        ka, kb = kind(a), kind(b)
        if ka == kb == "num":
            x, y = num(a), num(b)
        elif ka == kb and ka in ("string", "bytes", "bool", "timestamp", "duration"):
            x, y = a, b
            if ka == "bool":
                x, y = bool(a), bool(b)
        else:
            raise TypeError(f"no such overload: ordering {ka} and {kb}")
        if x != x or y != y:  # NaN: every comparison is false
            return 2
        return -1 if x < y else (1 if x > y else 0)

    def wrap(test: Callable[[Any, Any], bool]) -> Callable[[Any, Any], Any]:
        def op(a: Any, b: Any) -> Any:
            if isinstance(a, eval_error):
                return a
            if isinstance(b, eval_error):
                return b
            return ct.BoolType(test(a, b))

        return op

    def contains(item: Any, container: Any) -> bool:
        kc = kind(container)
        if kc not in ("list", "map"):
            raise TypeError(f"no such overload: in {kc}")
        return any(eq(item, x) for x in container)

    return {
        "_==_": wrap(eq),
        "_!=_": wrap(lambda a, b: not eq(a, b)),
        "_<_": wrap(lambda a, b: order(a, b) == -1),
        "_<=_": wrap(lambda a, b: order(a, b) in (-1, 0)),
        "_>_": wrap(lambda a, b: order(a, b) == 1),
        "_>=_": wrap(lambda a, b: order(a, b) in (1, 0)),
        "_in_": wrap(contains),
    }


def _native() -> _EngineBase:
    """The fastest native engine that imports: cel-cpp (see bench/cel.py), else cel-rust."""
    try:
        return CelCppEngine()
    except ImportError:
        return CelRustEngine()


REFERENCE: Engine = CelpyEngine()
_engines: list[Engine] = []  # the native engine, loaded on first use: a hub that never sees CEL saves ~10 MB


def native() -> Engine:
    """The native engine (cel-cpp), imported the first time an expression is compiled."""
    if not _engines:
        _engines.append(_native())
    return _engines[0]


def __getattr__(name: str) -> Any:
    if name == "NATIVE":
        return native()
    raise AttributeError(name)


def compile(expr: str) -> Compiled:
    """Compile `expr` with the native engine; raise BadExpression."""
    return native().compile(expr)


def bind(context: Mapping[str, Any]) -> Bound:
    """Prepare `context` once for evaluating several expressions with the native engine."""
    return native().bind(context)


def evaluate(compiled: Compiled, context: Mapping[str, Any] | Bound) -> Any:
    """Evaluate `compiled` (with the engine that compiled it) to a plain Python value; raise EvalError."""
    return compiled.engine.evaluate(compiled, context)


def value_or_none(compiled: Compiled, context: Mapping[str, Any] | Bound) -> Any:
    """`evaluate`, None where it raises EvalError (how conditions read a value).

    The fast path is called here directly (conditions evaluate it most: one call, not three); a value it does
    not vouch for, and an error (whose result is the engine's to give), go to the engine as in `evaluate`.
    """
    fast = compiled.fast
    if fast is not None and type(context) is dict:
        try:
            value = fast(context)
        except _Unsure:
            value = _ERR
        if value is not _ERR:
            return value
    try:
        return compiled.engine.evaluate(compiled, context)
    except EvalError:
        return None


def equality(compiled: Compiled) -> tuple[tuple[str, ...], Any] | None:
    """(path, literal) when `compiled` is `path == literal` or `literal == path` of the fast subset, else None.

    Such a condition is true only where the value at `path` equals the literal as a Python value of the same
    type, or as doubles for an int (or uint) and a double (`_equal`); anything else is false or an error, on
    the fast path and in the engine alike. The conditions index these by literal (`conditions._Trie`).
    """
    fast = compiled.fast
    if type(fast) is not partial or fast.args[0] is not _equal:
        return None
    if fast.func is _path_literal:
        return fast.args[1], fast.args[2]
    if fast.func is _literal_path:
        return fast.args[2], fast.args[1]
    return None

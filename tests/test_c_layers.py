"""A lint of the C core's shape (src/multigil/_core/*.c, *.h), read as text.

In the manner of msgspec's test_cpylint.py: the C sources are parsed here,
nothing is compiled.  Three rules:

1. **Layers.**  base.h declares the layers, lowest first, in a table (between
   ``layers:`` and ``end of layers``): each row a header and the .c files of its
   layer.  Every .c and .h file of the core is in the table exactly once; a .c
   file includes its own layer's header first; a file includes project headers
   only of layers below its own (and a .c file its own).  So there is no
   include cycle, and no file can call upward: C needs a declaration to call a
   function, -Werror makes an implicit one an error, and rule 3 closes the
   other way round.

2. **mg_enter / mg_leave pairing.**  In every function that calls
   ``mg_enter``, on every path from a successful ``mg_enter`` to a ``return``
   (``Py_RETURN_*`` included) or the end of the function there is one
   ``mg_leave`` for it, and none where nothing was entered.  A path is followed
   through blocks, ``if``/``else``, ``for``/``while`` (a loop body must end as
   it began; ``break`` and ``continue`` are followed), ``return``, ``break`` and
   ``continue``.  ``mg_enter``'s result must be tested where it is called, as
   ``if (mg_enter(...) < 0)`` (optionally after other ``||`` operands): that
   branch is the failure, nothing is entered there.  A function that enters
   and uses ``goto``, ``switch``, ``do`` or a label is refused: the check
   cannot follow it, so the function must be written so that it can.  A
   function that calls ``mg_leave`` without ``mg_enter`` is refused too: a
   session is left where it is entered.

3. **No private prototypes.**  A .c file declares no function that is not
   ``static``: whatever one file uses of another is declared in a header,
   where rule 1 sees it.

Each rule is also run on small synthetic inputs that break it, so that the
lint is known to fail when it should.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "src" / "multigil" / "_core"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
TABLE_HEADER = "base.h"

# ------------------------------------------------------------------ lexing --

_LEXEME = re.compile(
    r"""
      (?P<comment>/\*.*?\*/|//[^\n]*)
    | (?P<string>"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')
    | (?P<other>.)
    """,
    re.S | re.X,
)


def strip_comments(text: str, strings: bool = False) -> str:
    """`text` without comments (and, if `strings`, without the contents of
    string and character literals), newlines kept so that lines still count."""
    out = []
    for m in _LEXEME.finditer(text):
        kind = m.lastgroup
        lexeme = m.group()
        if kind == "comment":
            out.append(" " + "\n" * lexeme.count("\n"))
        elif kind == "string" and strings:
            out.append(lexeme[0] * 2)
        else:
            out.append(lexeme)
    return "".join(out)


@dataclass
class Token:
    text: str
    line: int


_TOKEN = re.compile(r"[A-Za-z_]\w*|\d\w*|\|\||&&|->|[<>=!]=|\S")


def tokens(code: str) -> list[Token]:
    """Tokens of C code without comments and strings, skipping preprocessor
    lines (with their continuations)."""
    result: list[Token] = []
    directive = False
    for lineno, line in enumerate(code.split("\n"), 1):
        if directive or line.lstrip().startswith("#"):
            directive = line.endswith("\\")
            continue
        result.extend(Token(m.group(), lineno) for m in _TOKEN.finditer(line))
    return result


def matching(toks: list[Token], i: int) -> int:
    """Index of the bracket closing the one at toks[i]."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    opening, closing = toks[i].text, pairs[toks[i].text]
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].text == opening:
            depth += 1
        elif toks[j].text == closing:
            depth -= 1
            if depth == 0:
                return j
    raise SyntaxError(f"line {toks[i].line}: unbalanced {opening!r}")


@dataclass
class Function:
    name: str
    line: int
    body: list[Token]       # inside the braces
    static: bool


def functions(code: str) -> Iterator[Function]:
    """The function definitions of a C file (comments and strings stripped)."""
    toks = tokens(code)
    i = 0
    start = 0               # first token of the current top-level declaration
    while i < len(toks):
        t = toks[i].text
        if t == ";":
            start = i + 1
        elif t == "{":
            end = matching(toks, i)
            if i > 0 and toks[i - 1].text == ")":
                # name( ... ) { ... }: a definition; its name precedes the '('
                depth, j = 0, i - 1
                while j >= 0:
                    if toks[j].text == ")":
                        depth += 1
                    elif toks[j].text == "(":
                        depth -= 1
                        if depth == 0:
                            break
                    j -= 1
                name = toks[j - 1]
                static = any(tok.text == "static" for tok in toks[start:j])
                yield Function(name.text, name.line, toks[i + 1:end], static)
                start = end + 1
            i = end
        i += 1


def prototypes(code: str) -> Iterator[tuple[str, int, bool]]:
    """(name, line, static) of each top-level function declaration without a
    body: ``type name(params);``."""
    toks = tokens(code)
    i, start = 0, 0
    while i < len(toks):
        t = toks[i].text
        if t in "{(":
            end = matching(toks, i)
            if (t == "(" and end + 1 < len(toks) and toks[end + 1].text == ";"
                    and i - 1 > start and re.fullmatch(r"[A-Za-z_]\w*", toks[i - 1].text)
                    and toks[start].text not in ("typedef", "return")
                    and not any(tok.text in ("=", "(") for tok in toks[start:i - 1])):
                decl = toks[start:i - 1]
                yield toks[i - 1].text, toks[i - 1].line, any(x.text == "static" for x in decl)
            i = end
        elif t == ";" or t == "}":
            start = i + 1
        i += 1


# ------------------------------------------------------------------ layers --

def layer_table(base_h: str) -> list[tuple[str, list[str]]]:
    """[(header, [its .c files])], lowest layer first, from base.h's table."""
    lines = base_h.split("\n")
    try:
        first = next(i for i, ln in enumerate(lines) if ln.strip(" */") == "layers:")
        last = next(i for i, ln in enumerate(lines) if ln.strip(" */") == "end of layers")
    except StopIteration:
        raise AssertionError(f"{TABLE_HEADER}: no 'layers:' ... 'end of layers' table") from None
    table: list[tuple[str, list[str]]] = []
    for ln in lines[first + 1:last]:
        words = ln.strip(" *").split()
        if not words:
            continue
        if words[0].endswith(".h"):
            table.append((words[0], []))
            words = words[1:]
        elif not words[0].endswith(".c") or not table:
            continue        # the rest of a description
        for w in words:
            if not w.endswith(".c"):
                break
            table[-1][1].append(w)
    return table


_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"', re.M)


def includes(text: str) -> list[str]:
    return _INCLUDE.findall(strip_comments(text))


def check_layers(files: dict[str, str]) -> list[str]:
    """Rule 1 on `files` (name -> text), whose base.h holds the table."""
    problems = []
    table = layer_table(files[TABLE_HEADER])
    layer_of: dict[str, int] = {}
    for n, (header, sources) in enumerate(table):
        for name in (header, *sources):
            if name in layer_of:
                problems.append(f"{TABLE_HEADER}: {name} is in the layer table twice")
            layer_of[name] = n
    for name in sorted(files):
        if name not in layer_of:
            problems.append(f"{name} is in no layer of the table in {TABLE_HEADER}")
    for name in sorted(layer_of):
        if name not in files:
            problems.append(f"{TABLE_HEADER}: the layer table names {name}, which does not exist")
    for name, text in sorted(files.items()):
        if name not in layer_of:
            continue
        own = layer_of[name]
        own_header = table[own][0]
        incs = includes(text)
        if name.endswith(".c") and (not incs or incs[0] != own_header):
            problems.append(f"{name} must include its layer's header {own_header} first")
        for inc in incs:
            if inc not in layer_of:
                problems.append(f"{name} includes {inc}, which is in no layer")
            elif inc == own_header and name.endswith(".c"):
                continue
            elif layer_of[inc] >= own:
                problems.append(
                    f"{name} (layer {own + 1}, {own_header}) includes {inc} of layer "
                    f"{layer_of[inc] + 1}: a file may include only headers of layers below its own")
    return problems


def check_prototypes(name: str, text: str) -> list[str]:
    """Rule 3 on one .c file."""
    return [f"{name}:{line}: {fn}() is declared here and not static: declare it in a header"
            for fn, line, static in prototypes(strip_comments(text, strings=True)) if not static]


# ---------------------------------------------------------- enter / leave --

ENTER, LEAVE = "mg_enter", "mg_leave"
RETURNS = {"return", "Py_RETURN_NONE", "Py_RETURN_TRUE", "Py_RETURN_FALSE",
           "Py_RETURN_NOTIMPLEMENTED"}


class Unsupported(Exception):
    pass


@dataclass
class Stmt:
    kind: str                       # block simple return break continue if loop
    line: int
    toks: list[Token] = field(default_factory=list)     # simple/return: its tokens; if/loop: the head
    body: list[Stmt] = field(default_factory=list)      # block: statements; if: [then, else?]; loop: [body]
    forever: bool = False           # loop: no condition, only break ends it


def parse_statement(toks: list[Token], i: int) -> tuple[Stmt, int]:
    t = toks[i]
    if t.text == "{":
        end = matching(toks, i)
        return Stmt("block", t.line, body=parse_statements(toks[i + 1:end])), end + 1
    if t.text in ("goto", "switch", "do", "case", "default"):
        raise Unsupported(f"line {t.line}: '{t.text}'")
    if i + 1 < len(toks) and toks[i + 1].text == ":" and re.fullmatch(r"[A-Za-z_]\w*", t.text):
        raise Unsupported(f"line {t.line}: label '{t.text}:'")
    if t.text in ("if", "for", "while"):
        if toks[i + 1].text != "(":
            raise SyntaxError(f"line {t.line}: '{t.text}' without '('")
        close = matching(toks, i + 1)
        head = toks[i + 2:close]
        body, j = parse_statement(toks, close + 1)
        if t.text != "if":
            forever = (t.text == "for" and [x.text for x in head] == [";", ";"]) or \
                      (t.text == "while" and [x.text for x in head] == ["1"])
            return Stmt("loop", t.line, head, [body], forever), j
        stmt = Stmt("if", t.line, head, [body])
        if j < len(toks) and toks[j].text == "else":
            other, j = parse_statement(toks, j + 1)
            stmt.body.append(other)
        return stmt, j
    # a simple statement (or return/break/continue) runs to the next ';' outside brackets
    j = i
    while toks[j].text != ";":
        if toks[j].text in "({[":
            j = matching(toks, j)
        j += 1
    kind = ("return" if t.text in RETURNS else t.text if t.text in ("break", "continue")
            else "simple")
    return Stmt(kind, t.line, toks[i:j]), j + 1


def parse_statements(toks: list[Token]) -> list[Stmt]:
    stmts, i = [], 0
    while i < len(toks):
        if toks[i].text == ";":
            i += 1
            continue
        stmt, i = parse_statement(toks, i)
        stmts.append(stmt)
    return stmts


def count(toks: list[Token], name: str) -> int:
    return sum(1 for a, b in zip(toks, toks[1:]) if a.text == name and b.text == "(")


def split_or(toks: list[Token]) -> list[list[Token]]:
    parts: list[list[Token]] = [[]]
    i = 0
    while i < len(toks):
        if toks[i].text in "([{":
            end = matching(toks, i)
            parts[-1].extend(toks[i:end + 1])
            i = end + 1
            continue
        if toks[i].text == "||":
            parts.append([])
        else:
            parts[-1].append(toks[i])
        i += 1
    return parts


def is_enter_failure(toks: list[Token]) -> bool:
    """`mg_enter ( ... ) < 0`, exactly."""
    if len(toks) < 5 or toks[0].text != ENTER or toks[1].text != "(":
        return False
    close = matching(toks, 1)
    return [t.text for t in toks[close + 1:]] == ["<", "0"]


class Pairing:
    """Follow every path of one function, counting the sessions entered."""

    def __init__(self, function: str) -> None:
        self.function = function
        self.problems: list[str] = []
        self.loops: list[tuple[list[int], list[int]]] = []     # (breaks, continues)

    def problem(self, line: int, what: str) -> None:
        self.problems.append(f"{self.function}() line {line}: {what}")

    def join(self, line: int, *states: int | None) -> int | None:
        live = {s for s in states if s is not None}
        if len(live) > 1:
            self.problem(line, f"paths meet with {sorted(live)} sessions entered: "
                               "every path must leave what it entered")
        return min(live) if live else None

    def expression(self, stmt: Stmt, state: int) -> int:
        if count(stmt.toks, ENTER):
            self.problem(stmt.line, f"the result of {ENTER}() must be tested where it is "
                                    f"called: if ({ENTER}(...) < 0)")
        state -= count(stmt.toks, LEAVE)
        if state < 0:
            self.problem(stmt.line, f"{LEAVE}() with no session entered on this path")
            state = 0
        return state

    def run(self, stmts: list[Stmt], state: int | None) -> int | None:
        for stmt in stmts:
            if state is None:
                break       # unreachable
            state = self.step(stmt, state)
        return state

    def step(self, stmt: Stmt, state: int) -> int | None:
        if stmt.kind == "block":
            return self.run(stmt.body, state)
        if stmt.kind == "simple":
            return self.expression(stmt, state)
        if stmt.kind == "return":
            state = self.expression(stmt, state)
            if state:
                self.problem(stmt.line, f"returns with {state} session(s) entered: "
                                        f"{LEAVE}() first")
            return None
        if stmt.kind in ("break", "continue"):
            if not self.loops:
                self.problem(stmt.line, f"'{stmt.kind}' outside a loop")
                return None
            self.loops[-1][0 if stmt.kind == "break" else 1].append(state)
            return None
        if stmt.kind == "if":
            then_state = else_state = state
            if count(stmt.toks, LEAVE):
                self.problem(stmt.line, f"{LEAVE}() in a condition")
            if count(stmt.toks, ENTER):
                parts = split_or(stmt.toks)
                if not is_enter_failure(parts[-1]) or any(count(p, ENTER) for p in parts[:-1]):
                    self.problem(stmt.line, f"the result of {ENTER}() must be tested as "
                                            f"if ({ENTER}(...) < 0)")
                else_state = state + 1
            then_end = self.run(stmt.body[:1], then_state)
            else_end = self.run(stmt.body[1:], else_state)
            return self.join(stmt.line, then_end, else_end)
        if stmt.kind == "loop":
            if count(stmt.toks, ENTER) or count(stmt.toks, LEAVE):
                self.problem(stmt.line, f"{ENTER}() or {LEAVE}() in a loop's head")
            self.loops.append(([], []))
            end = self.run(stmt.body, state)
            breaks, continues = self.loops.pop()
            for again in (end, *continues):
                if again is not None and again != state:
                    self.problem(stmt.line, "the loop body changes the number of sessions "
                                            f"entered ({state} -> {again})")
            return self.join(stmt.line, *breaks, None if stmt.forever else state)
        raise AssertionError(stmt.kind)


def check_pairing(name: str, text: str) -> list[str]:
    """Rule 2 on one .c file."""
    problems = []
    for fn in functions(strip_comments(text, strings=True)):
        enters, leaves = count(fn.body, ENTER), count(fn.body, LEAVE)
        if not enters and not leaves:
            continue
        where = f"{name}: {fn.name}()"
        if not enters:
            problems.append(f"{where} calls {LEAVE}() but does not enter: a session is left "
                            "in the function that entered it")
            continue
        try:
            body = parse_statements(fn.body)
        except Unsupported as exc:
            problems.append(f"{where} enters an interpreter and uses what this check cannot "
                            f"follow ({exc}): write it with if/for/while/return only")
            continue
        pairing = Pairing(f"{name}: {fn.name}")
        end = pairing.run(body, 0)
        if end:
            pairing.problem(fn.body[-1].line if fn.body else fn.line,
                            f"ends with {end} session(s) entered")
        problems.extend(pairing.problems)
    return problems


# ------------------------------------------------------------ the C core --

def core_files() -> dict[str, str]:
    files = {p.name: p.read_text() for p in sorted(CORE.iterdir()) if p.suffix in (".c", ".h")}
    assert TABLE_HEADER in files and len(files) > 10, CORE
    return files


def test_every_file_includes_only_headers_of_lower_layers() -> None:
    assert check_layers(core_files()) == []


def test_every_mg_enter_is_paired_with_mg_leave() -> None:
    files = core_files()
    problems = [p for name, text in files.items() if name.endswith(".c")
                for p in check_pairing(name, text)]
    assert problems == []
    # ... and the check did look at the functions that enter.
    entering = {fn.name for name, text in files.items() if name.endswith(".c")
                for fn in functions(strip_comments(text, strings=True))
                if count(fn.body, ENTER)}
    assert {"mg_run_in", "Worker_run", "Worker_interrupt"} <= entering


def test_no_c_file_declares_a_function_of_another() -> None:
    files = core_files()
    assert [p for name, text in files.items() if name.endswith(".c")
            for p in check_prototypes(name, text)] == []


def test_architecture_lists_the_layers_in_order() -> None:
    # docs/architecture.md draws the same table, between two markers: the
    # headers, in this order, and every .c file.
    table = layer_table(core_files()[TABLE_HEADER])
    doc = ARCHITECTURE.read_text()
    begin, end = doc.index("<!-- c-layers -->"), doc.index("<!-- /c-layers -->")
    listed = re.findall(r"\b(\w+\.[ch])\b", doc[begin:end])
    assert list(dict.fromkeys(h for h in listed if h.endswith(".h"))) == [h for h, _ in table]
    assert set(listed) == {name for header, sources in table for name in (header, *sources)}


def test_no_file_is_over_800_lines() -> None:
    long = {name: text.count("\n") for name, text in core_files().items()
            if text.count("\n") > 800}
    assert long == {}


# ------------------------------------------------- the lint, on bad input --

BASE_H = """\
/* base.h
 * layers:
 *   base.h     base.c     shared types
 *   low.h      low.c      the low layer
 *   high.h     high.c more.c
 *                         the high layer
 * end of layers
 */
"""


def tiny_tree(**changes: str) -> dict[str, str]:
    files = {
        "base.h": BASE_H,
        "base.c": '#include "base.h"\n',
        "low.h": '#include "base.h"\nint low(void);\n',
        "low.c": '#include "low.h"\n#include "base.h"\nint low(void) { return 1; }\n',
        "high.h": '#include "low.h"\nint high(void);\n',
        "high.c": '#include "high.h"\n#include "low.h"\nint high(void) { return low(); }\n',
        "more.c": '#include "high.h"\n',
    }
    files.update(changes)
    return {name: text for name, text in files.items() if text}


def test_layer_table_is_read_from_base_h() -> None:
    assert layer_table(BASE_H) == [("base.h", ["base.c"]), ("low.h", ["low.c"]),
                                   ("high.h", ["high.c", "more.c"])]
    assert check_layers(tiny_tree()) == []


@pytest.mark.parametrize("changes, expected", [
    ({"low.c": '#include "low.h"\n#include "high.h"\n'}, "low.c (layer 2, low.h) includes high.h"),
    ({"low.h": '#include "high.h"\n'}, "low.h (layer 2, low.h) includes high.h"),
    ({"high.h": '#include "high.h"\n'}, "high.h (layer 3, high.h) includes high.h"),
    ({"high.c": '#include "low.h"\n#include "high.h"\n'}, "high.c must include its layer's header"),
    ({"stray.c": '#include "base.h"\n'}, "stray.c is in no layer"),
    ({"more.c": ""}, "names more.c, which does not exist"),
    ({"low.c": '#include "low.h"\n#include "nowhere.h"\n'}, "includes nowhere.h, which is in no layer"),
    ({"high.c": '/* #include "base.h" */\n#include "high.h"\n'}, None),
])
def test_layer_check_fails_on_a_broken_tree(changes: dict[str, str], expected: str | None) -> None:
    problems = check_layers(tiny_tree(**changes))
    if expected is None:
        assert problems == []           # a commented-out include is no include
    else:
        assert any(expected in p for p in problems), problems


GOOD = """
int
good(mg_state *st, int64_t id)
{
    mg_session s;
    if (id < 0 || mg_enter(st, id, &s) < 0) {
        return -1;
    }
    for (;;) {
        if (done()) {
            break;
        }
        if (skip()) {
            continue;
        }
        work("mg_enter(", &s);      /* mg_enter( in a string or comment is no call */
    }
    if (bad()) {
        mg_leave(&s);
        return -1;
    }
    mg_leave(&s);
    Py_RETURN_NONE;
}

static int
leaves_only(void)
{
    return 0;
}
"""


@pytest.mark.parametrize("source, expected", [
    (GOOD, None),
    ("int f(void) { mg_session s; if (mg_enter(st, 1, &s) < 0) { return -1; }"
     " if (x) { return 0; } mg_leave(&s); return 1; }",
     "f() line 1: returns with 1 session(s) entered"),
    ("int f(void) { mg_session s; mg_enter(st, 1, &s); mg_leave(&s); return 0; }",
     "must be tested where it is called"),
    ("int f(void) { mg_session s; if (mg_enter(st, 1, &s)) { return -1; }"
     " mg_leave(&s); return 0; }",
     "must be tested as if (mg_enter(...) < 0)"),
    ("int f(void) { mg_session s; if (mg_enter(st, 1, &s) < 0) { return -1; }"
     " if (x) { mg_leave(&s); } return 0; }",
     "paths meet with [0, 1] sessions entered"),
    ("int f(void) { mg_session s; if (mg_enter(st, 1, &s) < 0) { mg_leave(&s); return -1; }"
     " mg_leave(&s); return 0; }",
     "mg_leave() with no session entered"),
    ("int f(void) { mg_session s; if (mg_enter(st, 1, &s) < 0) { return -1; }"
     " mg_leave(&s); mg_leave(&s); return 0; }",
     "mg_leave() with no session entered"),
    ("int f(void) { mg_session s; if (mg_enter(st, 1, &s) < 0) { return -1; }"
     " while (more()) { mg_leave(&s); } return 0; }",
     "the loop body changes the number of sessions"),
    ("void f(void) { mg_session s; if (mg_enter(st, 1, &s) < 0) { return; } work(); }",
     "ends with 1 session(s) entered"),
    ("int f(void) { mg_session s; if (mg_enter(st, 1, &s) < 0) { return -1; }"
     " if (x) goto out; out: mg_leave(&s); return 0; }",
     "uses what this check cannot follow"),
    ("void f(mg_session *s) { mg_leave(s); }", "calls mg_leave() but does not enter"),
])
def test_pairing_check_fails_on_broken_functions(source: str, expected: str | None) -> None:
    problems = check_pairing("x.c", source)
    if expected is None:
        assert problems == []
    else:
        assert any(expected in p for p in problems), problems


def test_prototype_check_fails_on_a_private_declaration() -> None:
    source = """
static int helper(int x);
int mg_something_above(PyObject *o);
static PyObject *(*table[])(void) = {0};
int f(void) { int n = g(1); return helper(n); }
"""
    problems = check_prototypes("x.c", source)
    assert len(problems) == 1 and "mg_something_above() is declared here" in problems[0], problems

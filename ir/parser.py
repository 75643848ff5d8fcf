"""Canonical IR text -> Graph, with errors that name line:column and the cause.

The grammar (docs/ir.md has the full version):

    func    := 'func' '@' NAME symbols? '(' params? ')' '->' '(' types? ')' attrs? '{' NL op* ret '}'
    op      := results '=' OPNAME attrs? operands?          (one per line)
    results := '%' ID ':' type (',' '%' ID ':' type)*
    type    := DTYPE '[' dims ']' ('@' DEVICE)?             dims are sympy expressions
    attrs   := '[' NAME '=' value (',' NAME '=' value)* ']'
    ret     := 'return' operands?
Lines starting with '//' are comments.
"""
from __future__ import annotations

import functools
import json
import math
import re

import sympy
import torch

from .graph import Graph, Op, Value, infer_result_types
from .ops import OPS, ExternArg, TypeError_, attrs_with_defaults
from .dtypes import TORCH_DTYPES
from .types import TensorType, symbol, shapes_equal


@functools.lru_cache(maxsize=4096)
def _sympify(text: str, symbols: tuple) -> sympy.Expr:
    """A size expression under the declared symbols; one graph repeats the same few many times."""
    return sympy.sympify(text, locals={**dict(symbols), **_DIM_FUNCS})


class IRParseError(ValueError):
    def __init__(self, msg: str, line: int, col: int):
        super().__init__(f"{line}:{col}: {msg}")
        self.msg, self.line, self.col = msg, line, col


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_VALUE_NAME = re.compile(r"%([A-Za-z0-9_]+)")
_DIM_CHARS = re.compile(r"^[A-Za-z0-9_+\-*/() ]*$")
_DIM_FUNCS = {"floor": sympy.floor, "ceiling": sympy.ceiling, "Max": sympy.Max, "Min": sympy.Min,
              "Mod": sympy.Mod, "Abs": sympy.Abs}
_TORCH_ENUMS = (torch.dtype, torch.layout, torch.memory_format)


class _Line:
    """A cursor over one line of text."""

    def __init__(self, text: str, lineno: int, symbols: dict[str, sympy.Symbol]):
        self.text, self.lineno, self.pos, self.symbols = text, lineno, 0, symbols

    def error(self, msg: str, pos: int | None = None) -> IRParseError:
        return IRParseError(msg, self.lineno, (self.pos if pos is None else pos) + 1)

    def ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def peek(self, s: str) -> bool:
        self.ws()
        return self.text.startswith(s, self.pos)

    def accept(self, s: str) -> bool:
        if self.peek(s):
            self.pos += len(s)
            return True
        return False

    def expect(self, s: str) -> None:
        if not self.accept(s):
            found = self.text[self.pos:self.pos + 12] or "end of line"
            raise self.error(f"expected {s!r}, found {found!r}")

    def ident(self, what: str = "a name") -> str:
        self.ws()
        m = _IDENT.match(self.text, self.pos)
        if not m:
            raise self.error(f"expected {what}")
        self.pos = m.end()
        return m.group(0)

    def value_name(self) -> str:
        self.ws()
        m = _VALUE_NAME.match(self.text, self.pos)
        if not m:
            raise self.error("expected a value such as %0 or %x")
        self.pos = m.end()
        return m.group(1)

    def at_end(self) -> bool:
        self.ws()
        return self.pos >= len(self.text)

    # ---------------------------------------------------------------- expressions and types
    def balanced(self, closers: str) -> str:
        """Text up to the next closer at bracket depth 0 (not consumed)."""
        depth, start = 0, self.pos
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c in "([{":
                depth += 1
            elif c in ")]}":
                if depth == 0:
                    break
                depth -= 1
            elif c == "," and depth == 0 and "," in closers:
                break
            self.pos += 1
        return self.text[start:self.pos]

    def sym_expr(self, text: str, start: int) -> sympy.Expr:
        text = text.strip()
        if not text:
            raise self.error("empty size expression", start)
        if not _DIM_CHARS.match(text):
            raise self.error(f"invalid characters in size expression {text!r}", start)
        if text.isdigit():
            # Most dims are plain sizes; sympify's parser costs ~0.5 ms each, most of a whole
            # graph's parse (the graph cache parses every graph it loads).
            return sympy.Integer(int(text))
        for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text):
            if name not in self.symbols and name not in _DIM_FUNCS:
                raise self.error(f"undeclared symbol {name!r} (declare it in func @name[...])", start)
        try:
            return _sympify(text, tuple(self.symbols.items()))
        except (sympy.SympifyError, SyntaxError, TypeError) as e:
            raise self.error(f"bad size expression {text!r}: {e}", start) from None

    def dims(self) -> list[sympy.Expr]:
        self.expect("[")
        out = []
        while not self.peek("]"):
            start = self.pos
            out.append(self.sym_expr(self.balanced(",]"), start))
            if not self.accept(","):
                break
        self.expect("]")
        return out

    def type(self) -> tuple[str, list, str | None]:
        self.ws()
        start = self.pos
        dtype = self.ident("a dtype such as f32")
        if dtype not in TORCH_DTYPES:
            raise self.error(f"unknown dtype {dtype!r}; valid: {', '.join(TORCH_DTYPES)}", start)
        shape = self.dims()
        device = None
        if self.text.startswith("@", self.pos):
            self.pos += 1
            m = re.compile(r"[A-Za-z0-9_:]+").match(self.text, self.pos)
            if not m:
                raise self.error("expected a device after '@'")
            device, self.pos = m.group(0), m.end()
        return dtype, shape, device

    # ---------------------------------------------------------------- attribute values
    def attr_value(self):
        self.ws()
        c = self.text[self.pos:self.pos + 1]
        if c in ("(", "["):
            close = ")" if c == "(" else "]"
            self.pos += 1
            items, trailing = [], False
            while not self.peek(close):
                items.append(self.attr_value())
                trailing = self.accept(",")
                if not trailing:
                    break
            self.expect(close)
            if c == "[":
                return items
            return items[0] if len(items) == 1 and not trailing else tuple(items)
        if c == "{":
            self.pos += 1
            out = {}
            while not self.peek("}"):
                key = self.attr_value()
                if not isinstance(key, str):
                    raise self.error("dict keys must be strings")
                self.expect(":")
                out[key] = self.attr_value()
                if not self.accept(","):
                    break
            self.expect("}")
            return out
        if c == '"':
            try:
                s, end = json.JSONDecoder().raw_decode(self.text, self.pos)
            except json.JSONDecodeError as e:
                raise self.error(f"bad string: {e.msg}") from None
            self.pos = end
            return s
        if c == "#":
            m = re.compile(r"#(\d+)").match(self.text, self.pos)
            if not m:
                raise self.error("expected #N (an extern operand)")
            self.pos = m.end()
            return ExternArg(int(m.group(1)))
        start = self.pos
        return self.atom(self.balanced(",)]}").strip(), start)

    def atom(self, text: str, start: int):
        if not text:
            raise self.error("expected an attribute value", start)
        fixed = {"None": None, "True": True, "False": False, "inf": math.inf, "-inf": -math.inf,
                 "nan": math.nan}
        if text in fixed:
            return fixed[text]
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        try:
            return float(text)
        except ValueError:
            pass
        if text.startswith("torch."):
            obj = getattr(torch, text[len("torch."):], None)
            if isinstance(obj, _TORCH_ENUMS):
                return obj
            raise self.error(f"unknown torch constant {text!r}", start)
        m = re.fullmatch(r'device\((".*")\)', text)
        if m:
            try:
                return torch.device(json.loads(m.group(1)))
            except (RuntimeError, json.JSONDecodeError) as e:
                raise self.error(f"bad device {text!r}: {e}", start) from None
        return self.sym_expr(text, start)

    def attrs(self) -> dict:
        out: dict = {}
        if not self.text.startswith("[", self.pos):
            return out
        self.pos += 1
        while not self.peek("]"):
            start = self.pos
            key = self.ident("an attribute name")
            if key in out:
                raise self.error(f"attribute {key!r} given twice", start)
            self.expect("=")
            out[key] = self.attr_value()
            if not self.accept(","):
                break
        self.expect("]")
        return out


def parse(text: str) -> Graph:
    """Parse one `func` in canonical IR text. Raises IRParseError with line:column on bad input."""
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines())
             if ln.strip() and not ln.strip().startswith("//")]
    if not lines:
        raise IRParseError("empty input: expected 'func @name(...)'", 1, 1)
    symbols: dict[str, sympy.Symbol] = {}
    lineno, head = lines[0]
    cur = _Line(head, lineno, symbols)
    cur.expect("func")
    cur.expect("@")
    name = cur.ident("a function name")
    if cur.text.startswith("[", cur.pos):
        cur.pos += 1
        while not cur.peek("]"):
            sym_name = cur.ident("a symbol name")
            if sym_name in symbols:
                raise cur.error(f"symbol {sym_name!r} declared twice")
            symbols[sym_name] = symbol(sym_name)
            if not cur.accept(","):
                break
        cur.expect("]")
    cur.expect("(")
    params = []
    while not cur.peek(")"):
        start = cur.pos
        pname = cur.value_name()
        if pname.isdigit():
            raise cur.error("graph inputs need a name that starts with a letter", start)
        cur.expect(":")
        params.append((pname, cur.type(), start))
        if not cur.accept(","):
            break
    cur.expect(")")
    cur.expect("->")
    cur.expect("(")
    ret_types = []
    while not cur.peek(")"):
        ret_types.append((cur.pos, cur.type()))
        if not cur.accept(","):
            break
    cur.expect(")")
    fattrs = cur.attrs() if cur.peek("[") else {}
    unknown = set(fattrs) - {"device"}
    if unknown:
        raise cur.error(f"unknown function attribute(s) {sorted(unknown)}; valid: ['device']")
    device = fattrs.get("device", "cpu")
    cur.expect("{")
    if not cur.at_end():
        raise cur.error("unexpected text after '{'")

    def mk(t, at: _Line, pos: int) -> TensorType:
        dtype, shape, dev = t
        try:
            return TensorType(dtype, tuple(shape), dev or device)
        except (ValueError, TypeError) as e:
            raise at.error(str(e), pos) from None

    g = Graph(name, device)
    g.symbols = list(symbols.values())
    env: dict[str, Value] = {}
    for pname, t, pos in params:
        if pname in env:
            raise cur.error(f"input %{pname} declared twice", pos)
        env[pname] = g.add_input(pname, mk(t, cur, pos))

    body = lines[1:]
    if not body or body[-1][1].strip() != "}":
        raise IRParseError("missing closing '}'", (body[-1][0] if body else lineno), 1)
    i = _parse_block(body, 0, len(body) - 1, g, env, symbols, mk, "return")
    if i != len(body) - 1:
        raise IRParseError("nothing may follow 'return'", body[i][0], 1)
    if len(ret_types) != len(g.outputs):
        raise IRParseError(f"header declares {len(ret_types)} results, return gives {len(g.outputs)}", lines[0][0], 1)
    head_cur = _Line(lines[0][1], lines[0][0], symbols)
    for (pos, t), v in zip(ret_types, g.outputs):
        declared = mk(t, head_cur, pos)
        if declared.dtype != v.type.dtype or not shapes_equal(declared.shape, v.type.shape):
            raise head_cur.error(f"declared result type {declared} differs from returned {v.type}", pos)
    return g


def _operand_list(cur: _Line, env: dict[str, Value], stop: str | None = None) -> list[Value]:
    out = []
    while not cur.at_end() and not (stop and cur.peek(stop)):
        start = cur.pos
        vname = cur.value_name()
        if vname not in env:
            raise cur.error(f"use of undefined value %{vname}", start)
        out.append(env[vname])
        if not cur.accept(","):
            break
    return out


def _parse_block(lines, i: int, end: int, g: Graph, env: dict[str, Value], symbols, mk, terminator: str) -> int:
    """Parse op lines from lines[i] up to and including the `terminator` line (`return` for the
    function, `yield` for a region body) into `g`; return the index after the terminator. `end`
    bounds the search (the function's closing brace)."""
    while i < end:
        lineno, text = lines[i]
        cur = _Line(text, lineno, symbols)
        if cur.peek(terminator):
            cur.expect(terminator)
            g.outputs = _operand_list(cur, env)
            if not cur.at_end():
                raise cur.error(f"unexpected text after {terminator} values")
            return i + 1
        for other in ("return", "yield", "}"):
            if other != terminator and cur.peek(other) and not cur.peek("%"):
                raise cur.error(f"expected an op or {terminator!r}, found {other!r}")
        i = _parse_op(lines, i, end, cur, g, env, symbols, mk)
    last = lines[min(i, len(lines) - 1)][0]
    raise IRParseError(f"missing {terminator!r}", last, 1)


def _parse_op(lines, i: int, end: int, cur: _Line, g: Graph, env: dict[str, Value], symbols, mk) -> int:
    results = []
    while True:
        start = cur.pos
        rname = cur.value_name()
        if rname in env:
            raise cur.error(f"value %{rname} defined twice", start)
        cur.expect(":")
        tpos = cur.pos
        results.append((rname, mk(cur.type(), cur, tpos), start))
        if not cur.accept(","):
            break
    cur.expect("=")
    start = cur.pos
    opname = cur.ident("an op name")
    if opname not in OPS:
        raise cur.error(f"unknown op {opname!r}", start + (len(cur.text[start:]) - len(cur.text[start:].lstrip())))
    attrs = cur.attrs()
    operands = _operand_list(cur, env, stop="{")
    opdef = OPS[opname]
    i += 1
    if opdef.kind == "region":
        cur.expect("{")
        if not cur.at_end():
            raise cur.error("unexpected text after '{'")
        if "body" in attrs:
            raise cur.error("a region's body is written as a block, not an attribute", start)
        attrs["body"], i = _parse_region(lines, i, end, g, symbols, mk, cur)
    elif not cur.at_end():
        raise cur.error("unexpected text after operands")
    missing = [k for k, a in opdef.attrs.items() if a.required and k not in attrs]
    extra = [k for k in attrs if k not in opdef.attrs]
    if missing or extra:
        what = "; ".join(([f"missing attribute(s) {missing}"] if missing else [])
                         + ([f"unknown attribute(s) {extra}"] if extra else []))
        raise cur.error(f"{opname}: {what}; valid: {sorted(opdef.attrs) or 'none'}", start)
    if opdef.arity is not None and len(operands) != opdef.arity:
        raise cur.error(f"{opname} takes {opdef.arity} operand(s), got {len(operands)}", start)
    attrs = attrs_with_defaults(opdef, attrs)
    stated = [t for _, t, _ in results]
    try:
        types = infer_result_types(opname, operands, attrs, stated)
    except (TypeError_, ValueError, TypeError, KeyError) as e:
        raise cur.error(f"{opname}: {e}", start) from None
    if len(types) != len(stated) or any(a.dtype != b.dtype or a.device != b.device or not shapes_equal(a.shape, b.shape)
                                        for a, b in zip(types, stated)):
        raise cur.error(f"{opname}: stated result type(s) {[str(t) for t in stated]} differ "
                        f"from the inferred {[str(t) for t in types]}", results[0][2])
    op = Op(opname, operands, attrs, stated)
    g.ops.append(op)
    for (rname, _, _), v in zip(results, op.results):
        env[rname] = v
    return i


def _parse_region(lines, i: int, end: int, outer: Graph, symbols, mk, opener: _Line) -> tuple[Graph, int]:
    """A region body: `^(%a: type, ...):`, op lines, `yield ...`, `}`. The body is isolated from
    above (it sees only its own parameters) and shares the function's symbols and device."""
    if i >= end:
        raise opener.error("expected '^(...):' on the line after '{'")
    lineno, text = lines[i]
    cur = _Line(text, lineno, symbols)
    cur.expect("^")
    cur.expect("(")
    body = Graph(outer.name, outer.device)
    body.symbols = outer.symbols
    env: dict[str, Value] = {}
    while not cur.peek(")"):
        start = cur.pos
        pname = cur.value_name()
        if pname.isdigit():
            raise cur.error("region parameters need a name that starts with a letter", start)
        if pname in env:
            raise cur.error(f"parameter %{pname} declared twice", start)
        cur.expect(":")
        tpos = cur.pos
        v = Value(mk(cur.type(), cur, tpos), None, 0, pname)
        body.inputs.append(v)
        env[pname] = v
        if not cur.accept(","):
            break
    cur.expect(")")
    cur.expect(":")
    if not cur.at_end():
        raise cur.error("unexpected text after the region's parameters")
    i = _parse_block(lines, i + 1, end, body, env, symbols, mk, "yield")
    if i >= end or lines[i][1].strip() != "}":
        at = lines[min(i, len(lines) - 1)]
        raise IRParseError("expected '}' closing the region", at[0], 1)
    return body, i + 1

"""Pipeline strings: ``"canonicalize,cse,dce,mixed-precision{dtype=bf16},fuse"``.

Grammar (whitespace, including newlines, is allowed between tokens)::

    pipeline := (pass (',' pass)*)?
    pass     := NAME ('{' (option (',' option)*)? '}')?
    option   := KEY '=' value
    value    := 'true' | 'false' | INT | FLOAT | '"' json-string '"' | BARE
    NAME,KEY := [A-Za-z_][A-Za-z0-9_.-]*
    BARE     := one or more characters other than whitespace , { } = "

An INT or FLOAT is a BARE word that reads as a number (``3``, ``-2``, ``0.5``, ``1e-3``, ``inf``);
quote a value to keep it a string (``name="3"``). Errors give the column and point at it.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from .registry import PASS_NAME, check_options, get_pass

_BARE = re.compile(r'[^\s,{}="]+')
_INT = re.compile(r"[-+]?\d+")
_FLOAT = re.compile(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?|[-+]?inf|nan")


@dataclass(frozen=True)
class PassSpec:
    """One pipeline entry: a pass name and the options written for it (defaults not filled in)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        if not self.options:
            return self.name
        inner = ",".join(f"{k}={format_option_value(v)}" for k, v in sorted(self.options.items()))
        return f"{self.name}{{{inner}}}"


class PipelineSyntaxError(ValueError):
    def __init__(self, msg: str, text: str, pos: int):
        line_start = text.rfind("\n", 0, pos) + 1
        line_end = text.find("\n", pos)
        line = text[line_start:line_end if line_end >= 0 else len(text)]
        lineno = text.count("\n", 0, pos) + 1
        col = pos - line_start + 1
        where = f"line {lineno}, column {col}" if "\n" in text else f"column {col}"
        super().__init__(f"bad pipeline string at {where}: {msg}\n  {line}\n  {' ' * (col - 1)}^")
        self.msg, self.text, self.pos = msg, text, pos


def format_option_value(v: Any) -> str:
    """The pipeline spelling of a value; parse_pipeline reads it back to an equal value."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    if isinstance(v, str):
        # Quote whatever would not read back as this same bare string.
        bare = _BARE.fullmatch(v) and not _INT.fullmatch(v) and not _FLOAT.fullmatch(v) \
            and v not in ("true", "false")
        return v if bare else json.dumps(v)
    raise TypeError(f"pipeline option values are bool, int, float or str, got {v!r}")


def format_pipeline(specs: list[PassSpec]) -> str:
    return ",".join(str(s) for s in specs)


class _Cursor:
    def __init__(self, text: str):
        self.text, self.pos = text, 0

    def ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at(self, s: str) -> bool:
        self.ws()
        return self.text.startswith(s, self.pos)

    def error(self, msg: str, pos: int | None = None) -> PipelineSyntaxError:
        return PipelineSyntaxError(msg, self.text, self.pos if pos is None else pos)

    def found(self) -> str:
        return repr(self.text[self.pos]) if self.pos < len(self.text) else "the end"

    def expect(self, s: str, what: str) -> None:
        if not self.at(s):
            raise self.error(f"expected {what}, found {self.found()}")
        self.pos += len(s)

    def name(self, what: str) -> str:
        self.ws()
        m = PASS_NAME.match(self.text, self.pos)
        if not m:
            raise self.error(f"expected {what}, found {self.found()}")
        self.pos = m.end()
        return m.group(0)

    def value(self) -> Any:
        self.ws()
        start = self.pos
        if self.text.startswith('"', self.pos):
            try:
                s, self.pos = json.JSONDecoder().raw_decode(self.text, self.pos)
            except json.JSONDecodeError as e:
                raise self.error(f"bad quoted string: {e.msg}") from None
            return s
        m = _BARE.match(self.text, self.pos)
        if not m:
            raise self.error(f"expected an option value, found {self.found()}", start)
        self.pos = m.end()
        word = m.group(0)
        if word in ("true", "True"):
            return True
        if word in ("false", "False"):
            return False
        if _INT.fullmatch(word):
            return int(word)
        if _FLOAT.fullmatch(word):
            return float(word)
        return word


def parse_pipeline(text: str, *, check_names: bool = True) -> list[PassSpec]:
    """Parse a pipeline string. Unknown pass names raise UnknownPassError (with a close match),
    syntax errors PipelineSyntaxError (with the column), bad options PassOptionError."""
    if not isinstance(text, str):
        raise TypeError(f"a pipeline string is a str, got {type(text).__name__}")
    cur = _Cursor(text)
    specs: list[PassSpec] = []
    cur.ws()
    if cur.pos == len(text):
        return specs  # "" is the empty pipeline
    while True:
        name_pos = cur.pos
        name = cur.name("a pass name")
        options: dict[str, Any] = {}
        if cur.at("{"):
            cur.pos += 1
            while not cur.at("}"):
                key_pos = cur.pos
                key = cur.name(f"an option name for pass {name!r} (or '}}')")
                if key in options:
                    raise cur.error(f"option {key!r} given twice for pass {name!r}", key_pos)
                cur.expect("=", f"'=' after option {key!r}")
                options[key] = cur.value()
                if not cur.at(","):
                    break
                cur.pos += 1
            cur.expect("}", "',' or '}' in the option list")
        if check_names:
            try:
                check_options(get_pass(name), options)
            except ValueError as e:
                # Keep the exception type (UnknownPassError / PassOptionError); add where it is.
                e.args = (f"{e.args[0]} (at column {name_pos + 1} of {text!r})",)
                raise
        specs.append(PassSpec(name, options))
        cur.ws()
        if cur.pos == len(text):
            return specs
        comma = cur.pos
        cur.expect(",", "',' between passes")
        cur.ws()
        if cur.pos == len(text):
            raise cur.error("trailing ',' (expected a pass name after it)", comma)

"""The pass registry: one name per pass, used as registry key, pipeline token and dump-file name.

A pass is a plain function ``fn(g: Graph, ctx: PassContext) -> PassResult`` registered with
``@graph_pass("name")``. The decorator returns the function unchanged, so a pass stays callable
(and testable) on its own.
"""
from __future__ import annotations

import difflib
import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable

# Pass names are pipeline tokens: no spaces, commas or braces. Dashes are the house style
# ("mixed-precision", "fold-double-neg"), matching MLIR's pass flags.
PASS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")

# Types a pipeline option value may have (parse_pipeline produces exactly these).
OPTION_TYPES = (bool, int, float, str)


@dataclass(frozen=True)
class PassResult:
    """What a pass reports: whether it changed the graph, counters for the dump/report, and
    optional JSON-able `details` (e.g. fuse's rejected pairs) that are too rich for a counter."""

    changed: bool
    stats: dict[str, int | float] = field(default_factory=dict)
    # Defaulted so passes that have nothing to explain keep returning PassResult(changed, stats).
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        # A truthy non-bool (e.g. a count) is easy to return by accident and hides intent.
        if not isinstance(self.changed, bool):
            raise TypeError(f"PassResult.changed must be a bool, got {self.changed!r}")
        for k, v in self.stats.items():
            if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"PassResult.stats must map str -> int|float, got {k!r}: {v!r}")
        if not isinstance(self.details, dict) or not all(isinstance(k, str) for k in self.details):
            raise TypeError(f"PassResult.details must be a dict with str keys, got {self.details!r}")


@dataclass(frozen=True)
class PassInfo:
    name: str
    fn: Callable
    description: str
    # Declared option defaults; None means "accepts any options, unchecked".
    options: dict[str, Any] | None

    @property
    def where(self) -> str:
        """module.function (file:line), to say which code a name belongs to."""
        fn = self.fn
        try:
            line = inspect.getsourcelines(fn)[1]
            loc = f" ({inspect.getsourcefile(fn)}:{line})"
        except (OSError, TypeError):
            loc = ""
        return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}{loc}"


class UnknownPassError(ValueError):
    """A pipeline (or PassContext.disabled) names a pass that is not registered."""

    def __init__(self, name: str, known: list[str] | None = None):
        known = sorted(_REGISTRY) if known is None else known
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        super().__init__(f"unknown pass {name!r}{hint}; registered passes: {', '.join(known) or '(none)'}")
        self.name, self.known, self.suggestion = name, known, (close[0] if close else None)


class PassOptionError(ValueError):
    """A pipeline gives a pass an option it does not declare, or a value of the wrong type."""


_REGISTRY: dict[str, PassInfo] = {}


def graph_pass(name: str, *, description: str = "", options: dict[str, Any] | None = None,
               replace: bool = False) -> Callable[[Callable], Callable]:
    """Register ``fn(g, ctx) -> PassResult`` under `name`.

    `options`, if given, declares the pass's pipeline options and their defaults
    (``options={"dtype": "bf16"}``): a pipeline giving an undeclared option or a value of another
    type is then an error, and ``ctx.pass_options`` always holds every declared key.
    """
    if callable(name):  # @graph_pass without a name: the name is the contract, so demand it
        raise TypeError("graph_pass needs a name: use @graph_pass(\"my-pass\")")
    if not isinstance(name, str) or not PASS_NAME.fullmatch(name):
        raise ValueError(f"invalid pass name {name!r}: use letters, digits, '_', '-' or '.', "
                         "starting with a letter or '_'")
    if options is not None:
        for k, v in options.items():
            if not PASS_NAME.fullmatch(k) or not isinstance(v, OPTION_TYPES):
                raise ValueError(f"pass {name!r}: option {k!r} needs a name and a default of type "
                                 f"bool, int, float or str, got {v!r}")

    def register(fn: Callable) -> Callable:
        if not callable(fn):
            raise TypeError(f"@graph_pass({name!r}) must decorate a function, got {fn!r}")
        if name in _REGISTRY and not replace:
            raise ValueError(f"pass {name!r} is already registered by {_REGISTRY[name].where}; "
                             "pick another name or pass replace=True")
        doc = inspect.getdoc(fn) or ""
        desc = description or (doc.splitlines()[0] if doc else "")
        _REGISTRY[name] = PassInfo(name, fn, desc, None if options is None else dict(options))
        return fn

    return register


def get_pass(name: str) -> PassInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownPassError(name) from None


def list_passes() -> dict[str, str]:
    """Registered pass names (sorted) and their one-line descriptions."""
    return {name: _REGISTRY[name].description for name in sorted(_REGISTRY)}


def unregister(name: str) -> None:
    """Remove a pass (tests and notebooks that re-define passes use this)."""
    _REGISTRY.pop(name, None)


def check_options(info: PassInfo, given: dict[str, Any]) -> dict[str, Any]:
    """The options a pass runs with: its declared defaults overlaid with `given`, type-checked."""
    if info.options is None:
        return dict(given)
    out = dict(info.options)
    for k, v in given.items():
        if k not in info.options:
            valid = ", ".join(sorted(info.options)) or "(none)"
            raise PassOptionError(f"pass {info.name!r} has no option {k!r}; its options: {valid}")
        want = type(info.options[k])
        ok = isinstance(v, want) and not (want is not bool and isinstance(v, bool))
        if want is float and isinstance(v, int) and not isinstance(v, bool):
            v, ok = float(v), True  # "scale=2" means 2.0 for a float option
        if not ok:
            hint = f' (quote it: {k}="{v}")' if want is str else ""
            raise PassOptionError(f"pass {info.name!r} option {k!r} takes a {want.__name__}, "
                                  f"got {type(v).__name__} {v!r}{hint}")
        out[k] = v
    return out

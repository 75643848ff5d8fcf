"""pipeline_fingerprint: a hash that changes whenever what a pipeline would do changes.

It goes into compile-cache keys, so editing a pass (a built-in or a user's) invalidates cached
results automatically, with no hand-written version string (Inductor's custom passes need a
hand-made uuid; this is the fix). Hashed, per pass that would run:
  * its name and its options, defaults filled in (so "x" and "x{k=<default>}" hash the same);
  * the source of the pass function, plus the source of the functions and classes it uses by
    global name that live in the same module or in ember itself, followed transitively (so a
    rule table or helper next to the pass counts). Code reached any other way (attributes of
    imported modules, other packages) is not followed: torch/triton versions belong in the cache
    key separately.
Without source (a pass defined in a REPL or by exec), the compiled code object is hashed instead.
Code in ember's own modules (the built-in passes and the helpers any pass reaches in ember) counts
as the whole file it is in, hashed once per process, named by module: `inspect.getsource` (a
tokenizer run per function, a parse of the whole module per class) cost ~0.2 s per process for the
default pipeline's ~340 functions and classes, paid by every compile's first tuning key, warm
ones included. A user's pass and the helpers next to it are still hashed function by function, so
editing an unrelated part of a user's script invalidates nothing.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import marshal
import sys
import types
import weakref
from typing import Any

from .context import PassContext
from .pipeline_text import PassSpec, format_option_value

_DIGESTS: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()


def pipeline_fingerprint(pipeline: str | list[PassSpec], ctx: PassContext | None = None) -> str:
    """Hex sha256 of what run_pipeline(g, pipeline, ctx) would run (disabled passes left out)."""
    from .manager import _resolve  # the manager imports this package's modules; avoid a cycle

    ctx = ctx if ctx is not None else PassContext.current()
    h = hashlib.sha256(b"ember-pipeline-fingerprint-v1\n")
    for spec, info, opts in _resolve(pipeline):
        if spec.name in ctx.disabled:
            continue
        opts_text = ",".join(f"{k}={type(v).__name__}:{format_option_value(v)}" for k, v in sorted(opts.items()))
        h.update(f"pass {spec.name}{{{opts_text}}}\n".encode())
        h.update(code_digest(info.fn).encode())
    return h.hexdigest()


def code_digest(fn) -> str:
    """Hash of a pass function's code and of the helpers it uses (see the module docstring)."""
    try:
        return _DIGESTS[fn]
    except (KeyError, TypeError):
        pass
    parts: list[bytes] = []
    _collect(fn, getattr(fn, "__module__", None), set(), parts)
    digest = hashlib.sha256(b"\0".join(parts)).hexdigest()
    try:
        _DIGESTS[fn] = digest
    except TypeError:  # not weak-referenceable; just do not cache
        pass
    return digest


def _is_own_code(obj, home: str | None) -> bool:
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        return False
    mod = getattr(obj, "__module__", None) or ""
    return mod == home or mod == "ember" or mod.startswith("ember.")


def _ember_module(obj) -> str | None:
    """The name of the ember module `obj` is defined in, if it has a source file; else None."""
    name = getattr(obj, "__module__", None) or ""
    if name != "ember" and not name.startswith("ember."):
        return None
    return name if getattr(sys.modules.get(name), "__file__", None) else None


@functools.lru_cache(maxsize=None)
def _module_digest(name: str) -> bytes:
    """`module <name> <sha256 of its file>`: the same on every machine with the same ember."""
    with open(sys.modules[name].__file__, "rb") as f:
        return f"module {name} {hashlib.sha256(f.read()).hexdigest()}".encode()


def _text_of(obj) -> bytes:
    try:
        return inspect.getsource(obj).encode()
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        if code is not None:
            return b"code:" + marshal.dumps(code)
        return b"repr:" + repr(obj).encode()


def _global_names(code: types.CodeType):
    yield from code.co_names
    for const in code.co_consts:  # nested functions, lambdas, comprehensions
        if isinstance(const, types.CodeType):
            yield from _global_names(const)


def _collect(obj, home: str | None, seen: set, parts: list[bytes]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if not inspect.isfunction(obj) and not inspect.isclass(obj) and callable(obj):
        obj = type(obj).__call__  # a callable object: its __call__ is the pass
    module = _ember_module(obj)
    if module is None:
        parts.append(_text_of(obj))
    elif module not in seen:  # ember's code: its whole file, once (see the module docstring)
        seen.add(module)
        parts.append(_module_digest(module))
    if inspect.isclass(obj):
        members = [m for m in vars(obj).values() if inspect.isfunction(m)]
        for m in members:
            _follow(m, home, seen, parts)
        return
    _follow(obj, home, seen, parts)


def _follow(fn, home: str | None, seen: set, parts: list[bytes]) -> None:
    code = getattr(fn, "__code__", None)
    if code is None:
        return
    globs = getattr(fn, "__globals__", {})
    for name in dict.fromkeys(_global_names(code)):  # ordered, de-duplicated
        ref = globs.get(name)
        ref = inspect.unwrap(ref) if callable(ref) and hasattr(ref, "__wrapped__") else ref  # lru_cache
        if _is_own_code(ref, home):
            _collect(ref, home, seen, parts)
        elif isinstance(ref, (list, tuple)):  # a rule table: follow the rules in it
            for item in ref:
                if _is_own_code(item, home):
                    _collect(item, home, seen, parts)

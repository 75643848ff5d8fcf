"""PassContext: the settings a pipeline runs under, usable as a ``with`` block (as in TVM).

    with PassContext(disabled=("sparsity",), instruments=[PrintAfter("fuse")]):
        run_pipeline(g, "canonicalize,cse,dce")

The current context lives in a ContextVar, so nested ``with`` blocks and threads each see their
own. While a pass runs, ``ctx.pass_options`` holds the options the pipeline string gave it (with
declared defaults filled in) and ``ctx.current_pass`` its name.
"""
from __future__ import annotations

import contextvars
import types
from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:
    from ..options import Options
    from .instruments import Instrument

_CURRENT: contextvars.ContextVar["PassContext | None"] = contextvars.ContextVar("ember_pass_context",
                                                                               default=None)
_EMPTY: Mapping[str, Any] = types.MappingProxyType({})


class PassContext:
    def __init__(self, verify: bool = True, disabled: Iterable[str] = (),
                 instruments: Iterable["Instrument"] = (), reproducer_dir: str | None = None,
                 options: "Options | None" = None, keep_ir: bool = False):
        if isinstance(disabled, str):  # disabled="cse" would otherwise disable "c", "s", "e"
            disabled = (disabled,)
        self.verify = verify
        self.disabled = tuple(disabled)
        self.instruments = list(instruments)
        self.reproducer_dir = reproducer_dir
        self.options = options
        # Keep every pass's output text in its PassRecord even when no instrument asks for it.
        self.keep_ir = keep_ir
        self.pass_options: Mapping[str, Any] = _EMPTY
        self.current_pass: str | None = None
        self._tokens: list[contextvars.Token] = []

    @staticmethod
    def current() -> "PassContext":
        """The innermost active context, or a fresh default one outside any ``with`` block."""
        ctx = _CURRENT.get()
        return ctx if ctx is not None else PassContext()

    def __enter__(self) -> "PassContext":
        self._tokens.append(_CURRENT.set(self))
        return self

    def __exit__(self, *exc) -> None:
        _CURRENT.reset(self._tokens.pop())

    def _set_pass(self, name: str | None, options: Mapping[str, Any]) -> tuple:
        """Enter one pass; returns what to hand to _restore_pass (passes may nest pipelines)."""
        saved = (self.current_pass, self.pass_options)
        self.current_pass = name
        self.pass_options = types.MappingProxyType(dict(options))
        return saved

    def _restore_pass(self, saved: tuple) -> None:
        self.current_pass, self.pass_options = saved

    def __repr__(self) -> str:
        return (f"PassContext(verify={self.verify}, disabled={self.disabled}, "
                f"instruments={self.instruments}, reproducer_dir={self.reproducer_dir!r})")

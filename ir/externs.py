"""Extern plumbing: naming an ATen op by string and the `#i` operand placeholders in its args."""
from __future__ import annotations

from typing import Any

import torch


def resolve_target(target: str):
    """'aten.convolution.default' -> torch.ops.aten.convolution.default."""
    obj: Any = torch.ops
    for part in target.split("."):
        try:
            obj = getattr(obj, part)
        except (AttributeError, RuntimeError):
            raise ValueError(f"unknown extern target {target!r}") from None
    return obj


class ExternArg:
    """A placeholder in an extern's `args`/`kwargs` for its i-th tensor operand (printed `#i`)."""

    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index

    def __eq__(self, other):
        return isinstance(other, ExternArg) and other.index == self.index

    def __hash__(self):
        return hash(("ExternArg", self.index))

    def __repr__(self):
        return f"#{self.index}"


def fill_extern_args(obj, inputs):
    if isinstance(obj, ExternArg):
        return inputs[obj.index]
    if isinstance(obj, list):
        return [fill_extern_args(o, inputs) for o in obj]
    if isinstance(obj, tuple):
        return tuple(fill_extern_args(o, inputs) for o in obj)
    if isinstance(obj, dict):
        return {k: fill_extern_args(v, inputs) for k, v in obj.items()}
    return obj

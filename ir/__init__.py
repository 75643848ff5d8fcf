"""ember's IR: types, the op table, graphs, text printer/parser, verifier, reference interpreter."""
from .dtypes import TORCH_DTYPES, from_torch, to_torch
from .types import TensorType, symbol, broadcast_shapes
from .ops import OPS, OpDef, ExternArg, get_op
from .graph import Graph, Op, Value, Builder, RegionBody
from .printer import print_graph
from .parser import parse, IRParseError
from .verifier import verify, VerificationError
from .interpreter import interpret, bind_symbols

__all__ = ["TORCH_DTYPES", "from_torch", "to_torch", "TensorType", "symbol", "broadcast_shapes", "OPS",
           "OpDef", "ExternArg", "get_op", "Graph", "Op", "Value", "Builder", "RegionBody", "print_graph", "parse",
           "IRParseError", "verify", "VerificationError", "interpret", "bind_symbols"]

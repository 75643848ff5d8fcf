"""ember's frontend: Dynamo + AOTAutograd capture, decompositions, ATen -> IR lowering, orchestration."""
from .backend import ember_backend
from .compile import compile_fx_graph
from .decompositions import decomposition_table
from .fx_to_ir import GraphUnsupported, LoweringError, fx_to_ir
from .lowering import LOWERINGS, Unsupported

__all__ = ["ember_backend", "compile_fx_graph", "decomposition_table", "fx_to_ir", "GraphUnsupported",
           "LoweringError", "LOWERINGS", "Unsupported"]

"""codegen: IR graph -> Triton kernels plus a generated Python wrapper that launches them.

    compiled = compile_graph(graph, options)
    outputs = compiled(inputs)                 # symbols bound from the input shapes
    print(compiled.wrapper_source)             # readable: one line per launch, IR op in a comment

Module map: wrapper.py walks the graph; memory_plan.py decides which buffers reuse dead ones'
storage; pointwise.py, reduction.py, row_kernel.py (fused regions with reductions) and
data_movement.py and matmul_template.py (ember's matmul kernel with fused prologue and epilogue)
write kernels through kernel_writer.py; matmul_emit.py decides, through choice.py's Chooser, whether
a matmul runs that template or the library; attention_template.py is the flash-attention template
and attention_emit.py runs SDPA externs as it or the library, as the Chooser decides;
pointwise_ops.py says how each pointwise op becomes Triton;
triton_helpers.py holds the @triton.jit helpers kernels call; launch_heuristics.py picks block sizes;
code_cache.py puts the module on disk and imports it; runtime.py is what the module uses at run time.
"""
from .compiled_graph import CompiledGraph, compile_graph

__all__ = ["CompiledGraph", "compile_graph"]

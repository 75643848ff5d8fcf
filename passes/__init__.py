"""ember's pass manager and built-in passes.

    from ember.passes import run_pipeline, PassContext, PrintAfter
    with PassContext(instruments=[PrintAfter("cse", only_if_changed=True)]):
        report = run_pipeline(g, "canonicalize,cse,dce")

docs/passes.md explains the pipeline grammar, instruments, reproducers and user passes.
"""
from .registry import (PassInfo, PassOptionError, PassResult, UnknownPassError, get_pass, graph_pass,
                       list_passes, unregister)
from .context import PassContext
from .pipeline_text import PassSpec, PipelineSyntaxError, format_pipeline, parse_pipeline
from .instruments import DumpIR, Instrument, PassTiming, PrintAfter
from .manager import PassFailedError, PassRecord, PipelineReport, run_pipeline
from .reproducer import read_reproducer, run_reproducer
from .fingerprint import pipeline_fingerprint

# Built-in passes register themselves on import.
from . import canonicalize as _canonicalize, cse as _cse, dce as _dce, fuse as _fuse  # noqa: E402,F401
from . import attention as _attention, hoist_views as _hoist_views  # noqa: E402,F401
from . import sink_permutes as _sink_permutes  # noqa: E402,F401
from . import conv_layout as _conv_layout, fuse_matmul as _fuse_matmul  # noqa: E402,F401
from . import conv_bias as _conv_bias, gelu_bf16 as _gelu_bf16  # noqa: E402,F401
from . import move_reshapes as _move_reshapes, sink_gathers as _sink_gathers  # noqa: E402,F401

__all__ = ["graph_pass", "PassResult", "PassContext", "PassSpec", "parse_pipeline", "format_pipeline",
           "run_pipeline", "PipelineReport", "PassRecord", "PassFailedError", "UnknownPassError",
           "PassOptionError", "PipelineSyntaxError", "Instrument", "PrintAfter", "DumpIR", "PassTiming",
           "pipeline_fingerprint", "list_passes", "get_pass", "PassInfo", "unregister",
           "read_reproducer", "run_reproducer"]

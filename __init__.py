"""ember: a torch.compile backend with its own IR, open pass API and Triton codegen.

    model = torch.compile(model, backend="ember")        # no import needed (entry point)

The names below are re-exported lazily so that `import ember` (which Dynamo does when it looks up
the backend) stays cheap and never imports half-built subpackages.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "graph_pass": "ember.passes",
    "PassContext": "ember.passes",
    "PassResult": "ember.passes",
    "PrintAfter": "ember.passes",
    "DumpIR": "ember.passes",
    "PassTiming": "ember.passes",
    "run_pipeline": "ember.passes",
    "list_passes": "ember.passes",
    "Options": "ember.options",
    "ir": "ember.ir",
    "parse": "ember.ir",
    "print_graph": "ember.ir",
    "ember_backend": "ember.frontend.backend",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'ember' has no attribute {name!r}") from None
    mod = importlib.import_module(module)
    return mod if module.endswith("." + name) else getattr(mod, name)

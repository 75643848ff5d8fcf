"""Run every ```python block of docs/passes.md, in order, in one namespace (like a notebook), so
the documented examples cannot rot."""
import re
from pathlib import Path

import ember
from ember import passes


DOC = Path(__file__).resolve().parents[2] / "docs" / "passes.md"


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_docs_examples_run(fresh_registry, monkeypatch, capsys):
    # The doc writes ember.graph_pass etc.: the top-level package re-exports them; make sure the
    # names resolve even while that re-export is being built.
    for name in ("graph_pass", "PassContext", "PassResult", "PrintAfter", "DumpIR", "PassTiming"):
        monkeypatch.setattr(ember, name, getattr(passes, name), raising=False)
    blocks = _python_blocks(DOC.read_text())
    assert len(blocks) >= 4
    ns: dict = {"__name__": "docs_passes_md"}
    for i, block in enumerate(blocks):
        code = compile(block, f"{DOC}:block{i}", "exec")
        exec(code, ns)
    assert "fold-double-neg" in passes.list_passes()
    assert "IR after fold-double-neg" in capsys.readouterr().err

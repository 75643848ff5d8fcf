"""When the wrapper decides a kernel's INDEX_64: at compile time for its own buffers, once per call
for the graph's inputs (views inherit it), at each launch only for extern results."""
import re

import torch

from ember.codegen import compile_graph, runtime
from ember.ir import parse

from codegen_check import check_graph, random_tensor

GRAPH = """\
func @f[s0](%x: f32[4,8], %y: f32[s0,8]) -> (f32[8,4], f32[s0,8], f32[4,8]) [device="cpu"] {
  %0: f32[4,8] = exp %x
  %1: f32[4,8] = neg %0
  %2: f32[8,4] = permute[dims=(1, 0)] %x
  %3: f32[8,4] = relu %2
  %4: f32[s0,8] = tanh %y
  %5: f32[s0,8] = sigmoid %4
  %6: f32[4,8] = extern[target="aten.sort.default", args=[#0], outputs=(0,)] %1
  %7: f32[4,8] = abs %6
  return %3, %5, %7
}
"""


def _flags(source: str) -> dict[str, str]:
    """IR comment of each launch -> its INDEX_64 argument."""
    out, comment = {}, None
    for line in source.splitlines():
        line = line.strip()
        if line.startswith("# %"):
            comment = line.split(" = ")[1].split()[0]
        m = re.search(r"INDEX_64=(.*)\)$", line)  # the launch's last argument
        if m:
            out[comment] = m.group(1)
    return out


def test_flags_are_decided_as_early_as_possible():
    g = parse(GRAPH)
    compiled = check_graph(g, [random_tensor((4, 8), torch.float32), random_tensor((3, 8), torch.float32)],
                           lambda x, y: (torch.relu(x.t()), torch.sigmoid(torch.tanh(y)),
                                         torch.sort(-torch.exp(x)).values.abs()))
    src = compiled.wrapper_source
    flags = _flags(src)
    assert flags["exp"] == "inputs_64"            # reads a graph input
    assert flags["neg"] == "False"                # only the wrapper's own, small buffers
    assert flags["relu"] == "inputs_64"           # a view of an input
    assert flags["tanh"] == "inputs_64 or needs_int64(buf4)"   # symbolic-size output: per launch
    assert flags["abs"] == "needs_int64(buf6)"     # an extern's result: per launch
    assert src.count("inputs_64 = needs_int64(x, y)") == 1


def test_a_huge_own_buffer_is_flagged_at_compile_time(monkeypatch):
    monkeypatch.setattr(runtime, "INT32_INDEX_LIMIT", 16)  # a 4x8 buffer is "huge"
    compiled = compile_graph(parse(GRAPH))
    assert _flags(compiled.wrapper_source)["neg"] == "True"

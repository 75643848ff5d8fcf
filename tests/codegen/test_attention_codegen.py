"""Codegen of SDPA externs: ember's flash-attention template or the library, as the Chooser
decides (heuristic on the CPU interpreter, a fake timer standing in for a GPU); the template's
result is a planned buffer; inputs the template does not cover stay on the library."""
import json

import pytest
import torch
from textwrap import dedent

from ember.autotune import keys as tuning_keys
from ember.codegen import choice
from ember.codegen.attention_emit import bind_sdpa, why_not_template
from ember.codegen.choice import Chooser
from ember.codegen.code_cache import content_hash, kernel_file_text, load_module, scratch_dir, write_generated
from ember.codegen.compiled_graph import CompiledGraph
from ember.codegen.wrapper import generate_module
from ember.ir import parse

F = torch.nn.functional
SDPA = 'target="aten.scaled_dot_product_attention.default"'
CAUSAL = f"""
func @f(%q: f32[2,4,24,16], %k: f32[2,2,24,16], %v: f32[2,2,24,16]) -> (f32[2,4,24,16]) {{
  %0: f32[2,4,24,16] = extern[args=[#0, #1, #2], kwargs={{"enable_gqa": True, "is_causal": True}}, {SDPA}] %q, %k, %v
  return %0
}}
"""


def _run(graph, generated, inputs):
    path, _ = write_generated(scratch_dir(), generated)
    compiled = CompiledGraph(graph, load_module(path, generated.interpret), generated, path)
    return compiled(inputs)


def _fake_gpu(monkeypatch, library_ms: float, template_ms: float):
    """A 'cuda' chooser whose operands are CPU tensors; the timer runs each candidate for real
    (the template in the interpreter) and times the library (which returns its result) and the
    template configs (which return None) as told."""
    monkeypatch.setattr(tuning_keys, "device_name", lambda d: "Fake GPU")
    monkeypatch.setattr(choice, "random_operand", lambda t, shape, device: (
        torch.rand(shape) > 0.5 if t.dtype == "b1" else torch.randn(shape)))
    ran = []

    def timer(run):
        out = run()
        ran.append("library" if isinstance(out, torch.Tensor) else "template")
        return library_ms if isinstance(out, torch.Tensor) else template_ms
    return timer, ran


def test_cpu_heuristic_launches_the_template_and_matches_sdpa():
    g = parse(dedent(CAUSAL))
    gen = generate_module(g)
    assert gen.num_kernels == 1 and gen.externs == []
    assert gen.wrapper_source.count("launch_attention(") == 1
    assert "scaled_dot_product_attention(" not in gen.wrapper_source
    q, k, v = torch.randn(2, 4, 24, 16), torch.randn(2, 2, 24, 16), torch.randn(2, 2, 24, 16)
    torch.testing.assert_close(_run(g, gen, [q, k, v])[0],
                               F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True))


@pytest.mark.parametrize("library_wins", [True, False])
def test_timed_choice_between_library_and_template(monkeypatch, tmp_path, library_wins):
    timer, ran = _fake_gpu(monkeypatch, 1.0 if library_wins else 3.0, 2.0)
    g = parse(dedent(CAUSAL))
    chooser = Chooser("cuda:0", cache_dir=str(tmp_path), timer=timer)
    gen = generate_module(g, chooser)
    assert "library" in ran and "template" in ran  # both really ran on the random operands
    decision = chooser.decisions[0]
    assert decision["op"] == "attention" and decision["source"] == "benchmark"
    assert decision["is_library"] == library_wins
    if library_wins:
        assert "torch.ops.aten.scaled_dot_product_attention.default(" in gen.wrapper_source
        assert "launch_attention" not in gen.source and gen.num_kernels == 0
        assert [e["target"] for e in gen.externs] == ["aten.scaled_dot_product_attention.default"]
    else:
        assert gen.wrapper_source.count("launch_attention(") == 1 and gen.externs == []
        assert f"BLOCK_M={decision['config']['BLOCK_M']}" in gen.source
    q, k, v = torch.randn(2, 4, 24, 16), torch.randn(2, 2, 24, 16), torch.randn(2, 2, 24, 16)
    torch.testing.assert_close(_run(g, gen, [q, k, v])[0],
                               F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True))


# The attention's result read by another op (an intermediate, as in every model), not returned.
CAUSAL_READ = CAUSAL.replace("  return %0", "  %1: f32[2,4,24,16] = neg %0\n  return %1")


@pytest.mark.parametrize("template_ms,template_wins", [(1.1, True), (1.3, False)])
def test_sdpa_must_beat_the_template_by_the_unplanned_margin(monkeypatch, tmp_path, template_ms, template_wins):
    """SDPA allocates its own result (no out=): 10% faster is not enough at a 1.15 margin, 30% is."""
    timer, ran = _fake_gpu(monkeypatch, 1.0, template_ms)
    chooser = Chooser("cuda:0", cache_dir=str(tmp_path), timer=timer, unplanned_margin=1.15)
    gen = generate_module(parse(dedent(CAUSAL_READ)), chooser)
    assert "library" in ran and chooser.decisions[0]["is_library"] is not template_wins
    assert ("launch_attention(" in gen.wrapper_source) is template_wins
    assert chooser.decisions[0]["timings_ms"]["sdpa"] == 1.0


def test_a_returned_sdpa_result_races_without_the_margin(monkeypatch, tmp_path):
    """A returned result is the caller's memory either way: SDPA 10% faster wins there, under the
    same margin that gives the intermediate's race to the template, and the two races keep
    decisions of their own in the tuning cache."""
    timer, _ = _fake_gpu(monkeypatch, 1.0, 1.1)
    for text, template_wins in ((CAUSAL, False), (CAUSAL_READ, True), (CAUSAL, False)):
        chooser = Chooser("cuda:0", cache_dir=str(tmp_path), timer=timer, unplanned_margin=1.15)
        gen = generate_module(parse(dedent(text)), chooser)
        assert chooser.decisions[0]["is_library"] is not template_wins, text
        assert ("launch_attention(" in gen.wrapper_source) is template_wins


def test_the_winner_is_the_kernel_its_race_compiled(monkeypatch, tmp_path):
    """The race runs the template from the file the graph's module then loads (same name, same
    text: code_cache.kernel_file_text), so the winner is not compiled a second time."""
    timer, _ = _fake_gpu(monkeypatch, 3.0, 1.0)
    g = parse(dedent(CAUSAL.replace("  %0: f32[2,4,24,16] = extern", "  %9: f32[2,4,24,16] = neg %q\n"
                                    "  %0: f32[2,4,24,16] = extern").replace("] %q, %k, %v", "] %9, %k, %v")))
    gen = generate_module(g, Chooser("cuda:0", cache_dir=str(tmp_path), timer=timer))
    (name,) = [n for n in gen.kernels if n.endswith("_attention")]
    assert name == "k1_attention"  # numbered by its op, as the race named it
    race_file = tmp_path / "code" / f"{content_hash(kernel_file_text(gen.kernels[name], gen.interpret))}.py"
    assert race_file.exists()  # written by the race, before the module was


def test_without_the_library_only_template_configs_are_timed(monkeypatch, tmp_path):
    timer, ran = _fake_gpu(monkeypatch, 0.5, 2.0)
    chooser = Chooser("cuda:0", cache_dir=str(tmp_path), timer=timer, attention_library=False)
    generate_module(parse(dedent(CAUSAL)), chooser)
    assert set(ran) == {"template"} and not chooser.decisions[0]["is_library"]


def test_template_result_is_a_planned_buffer():
    # %0 is dead after %1: the attention output lands on its bytes; the extern no longer aliases.
    g = parse(dedent(f"""
        func @f(%x: f32[2,4,24,16], %q: f32[2,4,24,16], %k: f32[2,4,24,16], %v: f32[2,4,24,16]) -> (f32[2,4,24,16], f32[2,4,24,16]) {{
          %0: f32[2,4,24,16] = exp %x
          %1: f32[2,4,24,16] = neg %0
          %2: f32[2,4,24,16] = extern[args=[#0, #1, #2], kwargs={{"scale": 0.3}}, {SDPA}] %q, %k, %v
          %3: f32[2,4,24,16] = relu %2
          return %1, %3
        }}
        """))
    gen = generate_module(g)
    attn = g.ops[2].result
    assert attn in gen.memory.buffers and gen.memory.slots[attn] == gen.memory.slots[g.ops[0].result]
    assert gen.num_kernels == 4
    x, q, k, v = (torch.randn(2, 4, 24, 16) for _ in range(4))
    neg_exp, attn_relu = _run(g, gen, [x, q, k, v])
    torch.testing.assert_close(neg_exp, -x.exp())
    torch.testing.assert_close(attn_relu, F.scaled_dot_product_attention(q, k, v, scale=0.3).relu())


@pytest.mark.parametrize("extra,why", [
    ('"dropout_p": 0.1', "dropout"),
    ('"attn_mask": #3', "a row may be fully masked"),   # a bool input mask on CUDA
])
def test_cuda_inputs_the_template_leaves_to_the_library(extra, why):
    g = parse(dedent(f"""
        func @f(%q: bf16[1,2,8,16], %k: bf16[1,2,8,16], %v: bf16[1,2,8,16], %m: b1[1,1,8,8]) -> (bf16[1,2,8,16]) [device="cuda"] {{
          %0: bf16[1,2,8,16] = extern[args=[#0, #1, #2], kwargs={{{extra}}}, {SDPA}] %q, %k, %v, %m
          return %0
        }}
        """))
    assert why in why_not_template(bind_sdpa(g.ops[0]), g)


def test_cuda_finite_padding_mask_and_causal_get_the_template():
    # HF's padding mask (where of 0 and the lowest value) cannot mask a row with -inf.
    g = parse(dedent(f"""
        func @f(%q: bf16[1,2,8,16], %k: bf16[1,2,8,16], %v: bf16[1,2,8,16], %m: b1[1,1,8,8]) -> (bf16[1,2,8,16], bf16[1,2,8,16]) [device="cuda"] {{
          %0: bf16[] = full[value=0.0]
          %1: bf16[] = full[value=-3.3895313892515355e+38]
          %2: bf16[1,1,8,8] = where %m, %0, %1
          %3: bf16[1,2,8,16] = extern[args=[#0, #1, #2], kwargs={{"attn_mask": #3}}, {SDPA}] %q, %k, %v, %2
          %4: bf16[1,2,8,16] = extern[args=[#0, #1, #2], kwargs={{"is_causal": True}}, {SDPA}] %q, %k, %v
          return %3, %4
        }}
        """))
    assert why_not_template(bind_sdpa(g.ops[3]), g) is None
    assert why_not_template(bind_sdpa(g.ops[4]), g) is None


class _Attention(torch.nn.Module):
    """Projections split into heads by a permute, SDPA, heads merged: what models write."""

    def __init__(self, dim=64, heads=4):
        super().__init__()
        self.heads, self.qkv, self.out = heads, torch.nn.Linear(dim, 3 * dim), torch.nn.Linear(dim, dim)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(b, s, d))


def test_compiled_module_launches_one_attention_kernel(tmp_path):
    torch._dynamo.reset()
    model = _Attention().eval()
    x = torch.randn(2, 20, 64)
    compiled = torch.compile(model, backend="ember", options={"dump_dir": str(tmp_path)})
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-4)
    (report,) = [json.loads(p.read_text()) for p in tmp_path.glob("*/report.json")]
    assert [d["choice"].startswith("flash_") for d in report["autotune"] if d["op"] == "attention"] == [True]
    assert not [e for e in report["externs"] if "scaled_dot_product" in e["target"]]
    wrapper = next(tmp_path.glob("*/wrapper.py")).read_text()
    assert wrapper.count("launch_attention(") == 1


def test_cuda_padding_mask_built_in_a_fused_region_gets_the_template():
    # fuse runs after the attention pass: codegen looks into the region that yields the mask.
    g = parse(dedent(f"""
        func @f(%keep: b1[2,1,1,20], %q: bf16[2,4,20,16], %k: bf16[2,2,20,16], %v: bf16[2,2,20,16]) -> (bf16[2,4,20,16]) [device="cuda"] {{
          %0: bf16[2,1,1,20] = fused[name="fused0"] %keep {{
            ^(%in0: b1[2,1,1,20]):
            %0: b1[2,1,1,20] = bitwise_not %in0
            %1: bf16[] = full[value=-3.3895313892515355e+38]
            %2: bf16[2,1,1,20] = full[value=0.0]
            %3: bf16[2,1,1,20] = where %0, %1, %2
            yield %3
          }}
          %1: bf16[2,4,20,16] = extern[args=[#0, #1, #2], kwargs={{"attn_mask": #3, "enable_gqa": True}}, {SDPA}] %q, %k, %v, %0
          return %1
        }}
        """))
    assert why_not_template(bind_sdpa(g.ops[1]), g) is None
    # The same region yielding -inf where a key is dropped could empty a row: the library.
    g2 = parse(str(g).replace("-3.3895313892515355e+38", "-inf"))
    assert "fully masked" in why_not_template(bind_sdpa(g2.ops[1]), g2)


HEADS = f"""
func @f(%x: f32[2,6,24]) -> (f32[12]) {{
  %0: f32[2,6,24] = exp %x
  %1: f32[2,6,8] = slice[dim=2, end=8, start=0, step=1] %0
  %2: f32[2,6,8] = slice[dim=2, end=16, start=8, step=1] %0
  %3: f32[2,6,8] = slice[dim=2, end=24, start=16, step=1] %0
  %4: f32[2,6,2,4] = reshape[shape=(2, 6, 2, 4)] %1
  %5: f32[2,2,6,4] = permute[dims=(0, 2, 1, 3)] %4
  %6: f32[2,6,2,4] = reshape[shape=(2, 6, 2, 4)] %2
  %7: f32[2,2,6,4] = permute[dims=(0, 2, 1, 3)] %6
  %8: f32[2,6,2,4] = reshape[shape=(2, 6, 2, 4)] %3
  %9: f32[2,2,6,4] = permute[dims=(0, 2, 1, 3)] %8
  %10: f32[2,2,6,4] = extern[args=[#0, #1, #2], kwargs={{"is_causal": True}}, {SDPA}] %5, %7, %9
  %11: f32[2,6,2,4] = permute[dims=(0, 2, 1, 3)] %10
  %12: f32[12,8] = reshape[shape=(12, 8)] %11
  %13: f32[12,8] = neg %12
  %14: f32[12,8] = exp %13
  %15: f32[12] = reduce_sum[axes=(1,), keepdim=False] %14
  return %15
}}
"""


def _heads_eager(x):
    q, k, v = (t.reshape(2, 6, 2, 4).permute(0, 2, 1, 3) for t in x.exp().split(8, dim=2))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return (-out.permute(0, 2, 1, 3).reshape(12, 8)).exp().sum(1)


def test_template_writes_the_layout_its_reader_views():
    # GPT-2's attention: q, k, v are heads of one product (views, read through their strides)
    # and the result goes back to [B*S, H*D] as permute + reshape. The template writes [B,S,H,D]
    # memory, so both are views: no copy kernel (one per layer before).
    g = parse(dedent(HEADS))
    gen = generate_module(g)
    src = gen.wrapper_source
    assert "view_or_none" not in src and "copy" not in src
    assert gen.num_kernels == 5   # exp, attention, neg, exp, sum (no fuse here: one op each)
    assert "buf10 = arena_float32[384:480].view((2, 6, 2, 4)).permute(0, 2, 1, 3)  # arena +1536" in src
    assert "buf12 = buf11.view((12, 8))" in src
    x = torch.randn(2, 6, 24)
    torch.testing.assert_close(_run(g, gen, [x])[0], _heads_eager(x))


def test_library_attention_keeps_a_run_time_view_test():
    # SDPA returns a tensor of its own layout: the wrapper asks at run time whether the
    # reshape views it (eager's CUDA flash kernels write [B,S,H,D]; the CPU one does not).
    g = parse(dedent(HEADS))
    gen = generate_module(g, _LibraryAttention("cpu"))
    assert "scaled_dot_product_attention.default(" in gen.wrapper_source and "view_or_none" in gen.wrapper_source
    x = torch.randn(2, 6, 24)
    torch.testing.assert_close(_run(g, gen, [x])[0], _heads_eager(x))


class _LibraryAttention(Chooser):
    def __init__(self, device):
        super().__init__(device, cache_dir=None, autotune=False)

    def choose(self, what, template_source, operands, impls, make_runner, heuristic=None):
        return next(i for i in impls if i.is_library)

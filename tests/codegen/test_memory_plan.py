"""Memory planning (codegen/memory_plan.py): which wrapper buffers take a dead buffer's storage, and
that the compiled graph still computes the same values when they do."""
import torch

from ember.codegen.matmul_emit import FixedChoice
from ember.codegen.memory_plan import plan_memory
from ember.codegen.wrapper import WrapperBuilder, generate_module
from ember.ir import Builder, ExternArg, TensorType, parse

from codegen_check import check_graph, random_tensor


def plan_of(g, chooser=None):
    builder = WrapperBuilder(g, chooser)
    return plan_memory(g, builder.lowering, builder.body_of)


def names(g) -> dict:
    """IR value -> the wrapper's name for it (`%3` -> "buf3"), for top-level op results."""
    out = {}
    for r in (r for op in g.ops for r in op.results):
        out[r] = f"buf{len(out)}"
    return out


def reuse_pairs(g, plan) -> dict[str, str]:
    n = names(g)
    return {n[b]: n[r.donor] for b, r in plan.reuses.items()}


def assert_sound(plan):
    """Buffers sharing one storage are live at disjoint steps, each starting strictly after the
    previous one's last use; a buffer that lives to the end (returned) shares with nothing."""
    storage = {}
    for b in plan.buffers:
        r = plan.reuses.get(b)
        storage[b] = storage[r.donor] if r else b
    groups = {}
    for b in plan.buffers:
        groups.setdefault(storage[b], []).append(plan.live[b])
    for ranges in groups.values():
        ranges.sort()
        for (_, end), (start, _) in zip(ranges, ranges[1:]):
            assert end is not None and end < start, ranges


CHAIN = """\
func @f(%x: f32[8,16]) -> (f32[8,16]) [device="cpu"] {
  %0: f32[8,16] = relu %x
  %1: f32[8,16] = neg %0
  %2: f32[8,16] = exp %1
  %3: f32[8,16] = tanh %2
  %4: f32[8,16] = neg %3
  %5: f32[8,16] = add %4, %x
  return %5
}
"""


def chain_eager(x):
    return -torch.tanh(torch.exp(-torch.relu(x))) + x


def test_long_chain_alternates_two_buffers():
    g = parse(CHAIN)
    plan = plan_of(g)
    assert_sound(plan)
    # buf0 is last read by %1, so %2 (not %1, which reads it) is the first op that may take it.
    assert reuse_pairs(g, plan) == {"buf2": "buf0", "buf3": "buf1", "buf4": "buf2"}
    # 6 buffers of 8*16*4 = 512 bytes: two storages cycle for buf0..buf4, the output has its own.
    assert plan.peak_bytes_unplanned == 6 * 512
    assert plan.peak_bytes_planned == 3 * 512


def test_long_chain_compiles_to_the_same_values():
    g = parse(CHAIN)
    compiled = check_graph(g, [random_tensor((8, 16), torch.float32)], chain_eager)
    src = compiled.wrapper_source
    assert "buf2 = buf0  # reuses buf0 (dead after %1)" in src
    assert "buf4 = buf2  # reuses buf2 (dead after %3)" in src
    assert src.count("torch.empty(") == 3
    assert compiled.peak_bytes_planned == 1536 < compiled.peak_bytes_unplanned == 3072
    assert compiled.memory == {"peak_bytes_planned": 1536, "peak_bytes_unplanned": 3072,
                               "buffers": 6, "reused": 3}


def test_reuse_across_dtypes_and_shapes_of_equal_byte_size():
    g = parse("""\
func @f(%x: f32[8,16]) -> (f32[8,16], f64[4,16]) [device="cpu"] {
  %0: f32[8,16] = relu %x
  %1: i32[8,16] = cast[dtype="i32"] %0
  %2: f32[8,16] = cast[dtype="f32"] %1
  %3: f32[128] = reshape[shape=(128,)] %2
  %4: f32[128] = neg %3
  %5: f32[8,16] = reshape[shape=(8,16)] %4
  %6: f32[8,16] = add %5, %2
  %7: f32[4,16] = slice[dim=0, end=4, start=0, step=1] %x
  %8: f64[4,16] = cast[dtype="f64"] %7
  %9: f32[8,16] = exp %6
  return %9, %8
}
""")
    plan = plan_of(g)
    assert_sound(plan)
    # %2 takes buf0 (same type); %4 takes buf1, an i32[8,16], as f32[128]. buf2 and buf4 are free
    # after %6, and %8 (f64[4,16]) and %9 have their 512 bytes, but both are returned: fresh.
    assert reuse_pairs(g, plan) == {"buf2": "buf0", "buf4": "buf1"}
    x = random_tensor((8, 16), torch.float32) * 3

    def eager(x):
        a = torch.relu(x).to(torch.int32).to(torch.float32)
        return torch.exp(-a.reshape(128).reshape(8, 16) + a), x[:4].to(torch.float64)

    compiled = check_graph(g, [x], eager)
    src = compiled.wrapper_source
    assert "buf4 = buf1.view(-1).view(torch.float32).view((128,))  # reuses buf1 (dead after %2)" in src
    assert "buf8 = torch.empty(" in src and "buf9 = torch.empty(" in src


def test_view_of_an_intermediate_keeps_it_alive():
    # buf0 is last read directly by the reshape at %1, but its view %2 is read by %6: a buffer
    # allocated before then must not take buf0's storage, or %6 would read garbage.
    g = parse("""\
func @f(%x: f32[8,16]) -> (f32[16,8]) [device="cpu"] {
  %0: f32[8,16] = relu %x
  %1: f32[128] = reshape[shape=(128,)] %0
  %2: f32[16,8] = reshape[shape=(16,8)] %1
  %3: f32[8,16] = neg %x
  %4: f32[8,16] = exp %3
  %5: f32[16,8] = permute[dims=(1, 0)] %4
  %6: f32[16,8] = add %2, %5
  %7: f32[16,8] = tanh %6
  %8: f32[16,8] = neg %7
  return %8
}
""")
    plan = plan_of(g)
    assert_sound(plan)
    buf0 = g.ops[0].result
    assert plan.live[buf0] == (0, 6)   # steps: one per op, the views included
    # Were buf0 dead after %1, %3 would take it. As it is, %6 takes buf3 (dead after %4), %7 the
    # newest of buf0 and buf4 (both dead after %6), and %8 is returned.
    assert reuse_pairs(g, plan) == {"buf6": "buf3", "buf7": "buf4"}
    check_graph(g, [random_tensor((8, 16), torch.float32)],
                lambda x: -torch.tanh(torch.relu(x).reshape(16, 8) + torch.exp(-x).t()))


def test_returned_buffers_and_their_views_are_never_reused():
    g = parse("""\
func @f(%x: f32[8,16]) -> (f32[16,8], f32[8,16]) [device="cpu"] {
  %0: f32[8,16] = relu %x
  %1: f32[8,16] = neg %0
  %2: f32[16,8] = permute[dims=(1, 0)] %0
  %3: f32[8,16] = exp %1
  %4: f32[8,16] = tanh %3
  %5: f32[8,16] = neg %4
  %6: f32[8,16] = add %5, %x
  return %2, %6
}
""")
    plan = plan_of(g)
    assert_sound(plan)
    buf0 = g.ops[0].result
    assert plan.live[buf0] == (0, None)     # returned through its view %2: never dies
    pairs = reuse_pairs(g, plan)
    assert "buf0" not in pairs.values()     # never a donor...
    assert "buf6" not in pairs              # ...and the returned buffer takes no storage either
    assert pairs == {"buf4": "buf1", "buf5": "buf3"}
    x = random_tensor((8, 16), torch.float32)
    compiled = check_graph(g, [x], lambda x: (torch.relu(x).t(), -torch.tanh(torch.exp(-torch.relu(x))) + x))
    a, b = compiled([x])
    assert a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr()


def test_extern_results_may_alias_their_inputs():
    # aten.alias returns a view of buf0: buf0 stays alive while the extern's result is read.
    b = Builder("alias")
    x = b.input("x", TensorType("f32", (8, 16)))
    v0 = b.op("relu", x)
    alias = b.op("extern", v0, result_types=[TensorType("f32", (8, 16))], target="aten.alias.default",
                 args=(ExternArg(0),), reason="test")
    v2 = b.op("neg", x)
    v3 = b.op("exp", v2)
    v4 = b.op("add", alias, v3)
    g = b.build([b.op("neg", v4)])
    plan = plan_of(g)
    assert_sound(plan)
    assert plan.live[v0.producer.result] == (0, 4)
    # Were buf0 dead after the extern, buf2 would take it; %4 takes buf2 (dead after %3) instead.
    assert reuse_pairs(g, plan) == {"buf4": "buf2"}
    assert alias not in plan.buffers   # torch allocated it (or not): never planned
    check_graph(g, [random_tensor((8, 16), torch.float32)], lambda x: -(torch.relu(x) + torch.exp(-x)))


MATMUL_IN_THE_MIDDLE = """\
func @f(%x: f32[8,8], %w: f32[8,8]) -> (f32[8,8]) [device="cpu"] {
  %0: f32[8,8] = relu %x
  %1: f32[8,8] = matmul %0, %w
  %2: f32[8,8] = neg %1
  %3: f32[8,8] = exp %2
  %4: f32[8,8] = add %3, %1
  return %4
}
"""


def _mm_eager(x, w):
    return torch.exp(-(torch.relu(x) @ w)) + torch.relu(x) @ w


def test_library_matmul_results_are_not_planned():
    g = parse(MATMUL_IN_THE_MIDDLE)
    library = FixedChoice("cpu", "library")
    plan = plan_of(g, library)
    assert_sound(plan)
    assert g.ops[1].result not in plan.buffers
    assert reuse_pairs(g, plan) == {"buf2": "buf0"}   # buf0 died at the matmul; buf1 is torch's
    check_graph(g, [random_tensor((8, 8), torch.float32), random_tensor((8, 8), torch.float32)],
                _mm_eager, chooser=FixedChoice("cpu", "library"))


def test_template_matmul_results_are_planned():
    # The template writes into a buffer the wrapper allocates: it is planned like a kernel's, and
    # may take a dead buffer's storage (x's relu is dead once the product is written).
    g = parse(MATMUL_IN_THE_MIDDLE)
    plan = plan_of(g, FixedChoice("cpu", "template"))
    assert_sound(plan)
    assert g.ops[1].result in plan.buffers
    assert reuse_pairs(g, plan) == {"buf2": "buf0"}
    compiled = check_graph(g, [random_tensor((8, 8), torch.float32), random_tensor((8, 8), torch.float32)],
                           _mm_eager, chooser=FixedChoice("cpu", "template"))
    assert compiled.externs == [] and compiled.num_kernels == 5


SYMBOLIC = """\
func @f[s0, s1](%x: f32[s0,16], %y: f32[s1,16]) -> (f32[s0,16], f32[s1,16]) [device="cpu"] {
  %0: f32[s0,16] = relu %x
  %1: f32[s1,16] = neg %y
  %2: f32[s0,16] = neg %0
  %3: f32[s1,16] = exp %1
  %4: i32[16,s0] = iota[dim=1]
  %5: f32[16,s0] = cast[dtype="f32"] %4
  %6: f32[s0,16] = permute[dims=(1, 0)] %5
  %7: f32[s0,16] = add %2, %6
  %8: f32[s0,16] = exp %7
  %9: f32[s1,16] = tanh %3
  return %8, %9
}
"""


def test_symbolic_sizes_reuse_only_when_provably_equal():
    g = parse(SYMBOLIC)
    plan = plan_of(g)
    assert_sound(plan)
    # 64*s0 bytes never match 64*s1 (s0 == s1 is possible, not provable): buf1 (dead after %3)
    # is free for the rest of the graph and nothing takes it. buf0 (dead after %2) goes to %4, an
    # i32[16,s0] of the same 64*s0 bytes; %5 finds nothing free (buf4 dies at %5 itself); %7 takes
    # buf4, back to f32[s0,16]. %8 and %9 are returned.
    assert reuse_pairs(g, plan) == {"buf4": "buf0", "buf7": "buf4"}
    assert plan.peak_bytes_unplanned == "384*s0 + 192*s1"   # six 64*s0 buffers, three 64*s1
    assert plan.peak_bytes_planned == "256*s0 + 192*s1"
    x, y = random_tensor((5, 16), torch.float32), random_tensor((3, 16), torch.float32)
    iota = torch.arange(5, dtype=torch.float32).expand(16, 5).t()
    compiled = check_graph(g, [x, y],
                           lambda x, y: (torch.exp(-torch.relu(x) + iota), torch.tanh(torch.exp(-y))))
    assert "buf4 = buf0.view(-1).view(torch.int32).view((16, s0))  # reuses buf0 (dead after %2)" \
        in compiled.wrapper_source
    assert compiled.peak_bytes_planned == "256*s0 + 192*s1"


def test_unfused_region_body_buffers_are_planned():
    # A region whose body is not one kernel (a view inside) runs op by op: its body's buffers are
    # planned too, and what it yields stands for its results (here: returned, so never reused).
    g = parse("""\
func @f(%x: f32[6,16], %b: f32[16]) -> (f32[6,16], f32[16]) [device="cpu"] {
  %0: f32[6,16] = neg %x
  %1: f32[6,16] = exp %0
  %2: f32[6,16], %3: f32[16] = fused[name="fused0"] %1, %b {
    ^(%a: f32[6,16], %c: f32[16]):
    %0: f32[6,16] = add %a, %c
    %1: f32[6,16] = relu %0
    %2: f32[6,16] = tanh %1
    %3: f32[16,6] = permute[dims=(1, 0)] %2
    %4: f32[16] = reduce_sum[axes=(1,), keepdim=False] %3
    yield %2, %4
  }
  return %2, %3
}
""")
    plan = plan_of(g)
    assert_sound(plan)
    body = g.ops[2].attrs["body"]
    inner = {op.result: f"%{i} in %2" for i, op in enumerate(body.ops)}
    assert len(plan.buffers) == 6
    # The body's add takes buf0 (dead after %1), its relu takes buf1 (dead after the add); its
    # tanh and the reduction are yielded, so returned.
    got = {inner[b]: (names(g).get(r.donor) or inner[r.donor], r.dead_after) for b, r in plan.reuses.items()}
    assert got == {"%0 in %2": ("buf0", "%1"), "%1 in %2": ("buf1", "%0 in %2")}
    x, bias = random_tensor((6, 16), torch.float32), random_tensor((16,), torch.float32)

    def eager(x, bias):
        t = torch.tanh(torch.relu(torch.exp(-x) + bias))
        return t, t.sum(0)

    check_graph(g, [x, bias], eager)


def test_generated_module_carries_the_plan():
    generated = generate_module(parse(CHAIN))
    assert generated.memory.summary()["reused"] == 3


def test_call_drops_each_intermediate_after_its_last_reader():
    # Without `del`, every intermediate lives until `call` returns (a model's peak would be the
    # sum of all of them). %0 is dropped once %3 took its storage, %1 after its last reader %3
    # (a returned view of it keeps its storage alive, not the name), %3 after %4.
    g = parse("""
func @f(%x: f32[4,8]) -> (f32[32], f32[4,8]) [device="cpu"] {
  %0: f32[4,8] = exp %x
  %1: f32[4,8] = neg %0
  %2: f32[32] = reshape[shape=(32,)] %1
  %3: f32[4,8] = relu %1
  %4: f32[4,8] = sigmoid %3
  return %2, %4
}""")
    src = generate_module(g).source
    lines = [l.strip() for l in src.splitlines()]
    assert lines.index("del buf0, buf1") == lines.index("# %4: f32[4,8] = sigmoid %3") - 1, src
    assert lines.index("del buf3") == lines.index("return [buf2, buf4]") - 1, src
    assert not any(l.startswith("del") and ("buf2" in l or "buf4" in l) for l in lines)  # returned
    x = random_tensor((4, 8), torch.float32)
    check_graph(g, [x], lambda x: ((-x.exp()).reshape(32), (-x.exp()).relu().sigmoid()))


def test_a_region_run_op_by_op_drops_its_inner_values():
    # A matmul region whose library implementation won: torch's product and the epilogue kernel's
    # buffer are locals of the region's body. Without a `del` each product lived until `call`
    # returned (BERT on the H100: 1380 MiB per call against eager's 132).
    import re
    from ember.codegen.matmul_emit import FixedChoice
    from ember.codegen.wrapper import generate_module
    from ember.options import DEFAULT_PIPELINE
    from ember.passes import PassContext, run_pipeline
    g = parse("""\
func @f(%x: f32[16,32], %w1: f32[32,64], %w2: f32[64,32]) -> (f32[16,32]) [device="cpu"] {
  %0: f32[16,64] = matmul %x, %w1
  %1: f32[16,64] = relu %0
  %2: f32[16,32] = matmul %1, %w2
  %3: f32[16,32] = exp %2
  return %3
}
""")
    run_pipeline(g, DEFAULT_PIPELINE, PassContext())
    src = generate_module(g, FixedChoice("cpu", "library")).wrapper_source
    inner = re.findall(r"^    (buf\d+_\d+) = ", src, re.M)
    assert len(inner) == 4  # two products, two epilogue buffers
    deleted = {n for line in re.findall(r"^    del (.*)$", src, re.M) for n in line.split(", ")}
    assert set(inner) <= deleted
    assert "buf0" in deleted  # the first region's result, once the second matmul has read it

"""Memory planning (codegen/memory_plan.py): which wrapper buffers take a dead buffer's storage, and
that the compiled graph still computes the same values when they do."""
import torch

from ember.codegen.matmul_emit import FixedChoice
from ember.codegen.memory_plan import nbytes, plan_memory
from ember.codegen.placement import ALIGN, aligned
from ember.codegen.wrapper import WrapperBuilder, generate_module
from ember.ir import Builder, ExternArg, TensorType, parse

from codegen_check import check_graph, random_tensor


def plan_of(g, chooser=None, outputs_in_arena=False):
    builder = WrapperBuilder(g, chooser)
    return plan_memory(g, builder.lowering, builder.body_of, outputs_in_arena)


def names(g) -> dict:
    """IR value -> the wrapper's name for it (`%3` -> "buf3"), for top-level op results."""
    out = {}
    for r in (r for op in g.ops for r in op.results):
        out[r] = f"buf{len(out)}"
    return out


def reuse_pairs(g, plan) -> dict[str, str]:
    n = names(g)
    return {n[b]: n[r.donor] for b, r in plan.reuses.items()}


def slots(g, plan) -> dict[str, int]:
    n = names(g)
    return {n[b]: offset for b, offset in plan.slots.items() if b in n}


def assert_sound(plan):
    """Arena buffers live at overlapping steps have disjoint byte ranges; buffers sharing one
    storage (symbolic sizes) are live at disjoint steps, each starting strictly after the previous
    one's last use; a buffer that lives to the end (returned) shares with nothing."""
    end = 1 << 30
    spans = [(b, plan.slots[b], plan.slots[b] + aligned(int(nbytes(b))), plan.live[b]) for b in plan.slots]
    for i, (b, lo, hi, (first, last)) in enumerate(spans):
        assert lo % ALIGN == 0 and hi <= plan.arena_bytes
        for c, lo2, hi2, (first2, last2) in spans[i + 1:]:
            if first <= (end if last2 is None else last2) and first2 <= (end if last is None else last):
                assert hi <= lo2 or hi2 <= lo, (b, c)
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


def test_long_chain_cycles_through_two_slots():
    g = parse(CHAIN)
    plan = plan_of(g)
    assert_sound(plan)
    # buf0 is last read by %1, so %2 (not %1, which reads it) is the first op that may share its
    # bytes: five buffers of 8*16*4 = 512 bytes cycle through two slots; the output (%5) is
    # returned and gets a torch.empty of its own.
    assert slots(g, plan) == {"buf0": 0, "buf1": 512, "buf2": 0, "buf3": 512, "buf4": 0}
    assert plan.arena_bytes == 1024 and plan.reuses == {}
    assert plan.peak_bytes_unplanned == 6 * 512
    assert plan.peak_bytes_planned == 3 * 512


def test_outputs_in_the_arena_take_a_dead_buffers_bytes():
    g = parse(CHAIN)
    plan = plan_of(g, outputs_in_arena=True)
    assert_sound(plan)
    # %5 is live from its step to the end; only buf4 (read by %5) is live with it.
    assert slots(g, plan)["buf5"] == 512 and plan.arena_bytes == 1024
    assert plan.peak_bytes_planned == 1024


def test_elementwise_kernels_write_over_the_operand_they_read_last():
    # The wrapper's plan (it knows which kernels are elementwise): each op of the chain reads the
    # previous buffer last, at the index it writes, so the whole chain runs in one slot.
    g = parse(CHAIN)
    builder = WrapperBuilder(g)
    builder.build()
    plan = builder.memory
    assert set(slots(g, plan).values()) == {0} and plan.arena_bytes == 512
    n = names(g)
    assert {n[t]: n[d] for t, d in plan.in_place.items()} == {f"buf{i}": "buf0" for i in range(1, 5)}


def test_a_reduction_or_a_second_view_keeps_its_own_bytes():
    # The sum reads %0 along rows (not at the index it writes); %3 reads %2 twice, once transposed.
    g = parse("""\
func @f(%x: f32[16,16]) -> (f32[16], f32[16,16]) [device="cpu"] {
  %0: f32[16,16] = exp %x
  %1: f32[16] = reduce_sum[axes=(1,), keepdim=False] %0
  %2: f32[16,16] = neg %x
  %3: f32[16,16] = permute[dims=(1, 0)] %2
  %4: f32[16,16] = add %2, %3
  return %1, %4
}
""")
    builder = WrapperBuilder(g)
    builder.build()
    assert builder.memory.in_place == {}
    check_graph(g, [random_tensor((16, 16), torch.float32)],
                lambda x: (x.exp().sum(1), -x + (-x).t()))


def test_long_chain_compiles_to_the_same_values():
    g = parse(CHAIN)
    compiled = check_graph(g, [random_tensor((8, 16), torch.float32)], chain_eager)
    src = compiled.wrapper_source
    assert "arena = new_arena(512, DEVICE)" in src
    assert "buf2 = arena_float32[0:128].view((8, 16))  # arena +0" in src
    assert src.count("torch.empty(") == 1   # the returned buf5 (the arena: new_arena)
    assert compiled.peak_bytes_planned == 1024 < compiled.peak_bytes_unplanned == 3072
    assert compiled.memory == {"peak_bytes_planned": 1024, "peak_bytes_unplanned": 3072,
                               "buffers": 6, "arena_bytes": 512, "in_arena": 5, "reused": 0}


def test_outputs_in_the_arena_compile_to_the_same_values():
    g = parse(CHAIN)
    x = random_tensor((8, 16), torch.float32)
    generated = generate_module(g, outputs_in_arena=True)
    assert "buf5 = arena_float32[0:128].view((8, 16))  # arena +0" in generated.wrapper_source
    compiled = check_graph(g, [x], chain_eager, outputs_in_arena=True)
    (out,) = compiled([x])
    assert out.untyped_storage().nbytes() == 512   # a view of the arena


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
    # Byte ranges are shared whatever the dtype and shape: %2 lands on buf0's bytes, %4 (an
    # f32[128]) on buf1's, an i32[8,16]. %8 (f64[4,16]) and %9 are returned: fresh.
    got = slots(g, plan)
    assert got["buf2"] == got["buf0"] and got["buf4"] == got["buf1"] != got["buf0"]
    # %6 reads buf2 and buf4 while writing: three slots.
    assert plan.arena_bytes == 1536 and "buf8" not in got and "buf9" not in got
    x = random_tensor((8, 16), torch.float32) * 3

    def eager(x):
        a = torch.relu(x).to(torch.int32).to(torch.float32)
        return torch.exp(-a.reshape(128).reshape(8, 16) + a), x[:4].to(torch.float64)

    compiled = check_graph(g, [x], eager)
    src = compiled.wrapper_source
    assert "buf1 = arena_int32[128:256].view((8, 16))  # arena +512" in src
    assert "buf4 = arena_float32[128:256].view((128,))  # arena +512" in src
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
    # Were buf0 dead after %1, %3 would land on its bytes. As it is, %3 and %4 need bytes of
    # their own, and %6 lands on buf3's (dead after %4).
    got = slots(g, plan)
    assert got["buf3"] != got["buf0"] != got["buf4"] and got["buf6"] == got["buf3"]
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
    got = slots(g, plan)
    assert "buf0" not in got and "buf6" not in got   # returned: fresh storage of their own
    assert got == {"buf1": 0, "buf3": 512, "buf4": 0, "buf5": 512}
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
    # Were buf0 dead after the extern, buf2 would land on its bytes; %4 lands on buf2's
    # (dead after %3) instead.
    got = slots(g, plan)
    assert got["buf2"] != got["buf0"] and got["buf4"] == got["buf2"]
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


def test_library_matmul_writes_its_product_into_the_arena():
    g = parse(MATMUL_IN_THE_MIDDLE)
    library = FixedChoice("cpu", "library")
    plan = plan_of(g, library)
    assert_sound(plan)
    assert g.ops[1].result in plan.buffers   # mm's out= form writes a planned buffer
    got = slots(g, plan)
    assert got["buf2"] == got["buf0"] != got["buf1"]   # buf0 died at the matmul
    compiled = check_graph(g, [random_tensor((8, 8), torch.float32), random_tensor((8, 8), torch.float32)],
                           _mm_eager, chooser=FixedChoice("cpu", "library"))
    assert "torch.mm(buf0, w, out=buf1)" in compiled.wrapper_source


def test_four_dim_library_matmul_stays_torchs():
    # mm.out and bmm.out take 2-d and 3-d operands; a [2,2,8,8] product is torch.matmul's.
    g = parse("""\
func @f(%x: f32[2,2,8,8], %w: f32[2,2,8,8]) -> (f32[2,2,8,8]) [device="cpu"] {
  %0: f32[2,2,8,8] = relu %x
  %1: f32[2,2,8,8] = matmul %0, %w
  %2: f32[2,2,8,8] = neg %1
  return %2
}
""")
    plan = plan_of(g, FixedChoice("cpu", "library"))
    assert g.ops[1].result not in plan.buffers
    x, w = random_tensor((2, 2, 8, 8), torch.float32), random_tensor((2, 2, 8, 8), torch.float32)
    compiled = check_graph(g, [x, w], lambda x, w: -(torch.relu(x) @ w), chooser=FixedChoice("cpu", "library"))
    assert "buf1 = torch.matmul(buf0, w)" in compiled.wrapper_source


def test_batched_library_matmul_writes_through_bmm_out():
    g = parse("""\
func @f(%x: f32[2,8,8], %w: f32[2,8,8]) -> (f32[2,8,8]) [device="cpu"] {
  %0: f32[2,8,8] = relu %x
  %1: f32[2,8,8] = matmul %0, %w
  %2: f32[2,8,8] = neg %1
  return %2
}
""")
    x, w = random_tensor((2, 8, 8), torch.float32), random_tensor((2, 8, 8), torch.float32)
    compiled = check_graph(g, [x, w], lambda x, w: -(torch.relu(x) @ w), chooser=FixedChoice("cpu", "library"))
    assert "torch.bmm(buf0, w, out=buf1)" in compiled.wrapper_source


def test_template_matmul_results_are_planned():
    # The template writes into a buffer the wrapper allocates: it is planned like a kernel's, and
    # may take a dead buffer's storage (x's relu is dead once the product is written).
    g = parse(MATMUL_IN_THE_MIDDLE)
    plan = plan_of(g, FixedChoice("cpu", "template"))
    assert_sound(plan)
    assert g.ops[1].result in plan.buffers
    got = slots(g, plan)
    assert got["buf2"] == got["buf0"] != got["buf1"]
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
    # The body's add lands on buf0's bytes (dead after %1), its relu on buf1's (dead after the
    # add); its tanh and the reduction are yielded, so returned: fresh.
    outer = slots(g, plan)
    got = {inner[b]: offset for b, offset in plan.slots.items() if b in inner}
    assert got == {"%0 in %2": outer["buf0"], "%1 in %2": outer["buf1"]} and outer["buf0"] != outer["buf1"]
    x, bias = random_tensor((6, 16), torch.float32), random_tensor((16,), torch.float32)

    def eager(x, bias):
        t = torch.tanh(torch.relu(torch.exp(-x) + bias))
        return t, t.sum(0)

    check_graph(g, [x, bias], eager)


def test_generated_module_carries_the_plan():
    generated = generate_module(parse(CHAIN))
    assert generated.memory.summary()["in_arena"] == 5


def test_call_drops_each_intermediate_after_its_last_reader():
    # Without `del`, every intermediate lives until `call` returns (a model's peak would be the
    # sum of all of them, where they are not in the arena). %0 is dropped after its last reader
    # %1, %1 after its last reader %3 (a returned view of it keeps its storage alive, not the
    # name), %3 after %4.
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
    assert lines.index("del buf0") == lines.index("# %2: f32[32] = reshape[shape=(32,)] %1") - 1, src
    assert lines.index("del buf1") == lines.index("# %4: f32[4,8] = sigmoid %3") - 1, src
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


def test_a_pointwise_region_with_a_concat_is_not_elementwise():
    # A concat reads its pieces at shifted coordinates: its region must never write over one.
    g = parse("""\
func @f(%x: f32[4,3], %y: f32[4,5]) -> (f32[4,5], f32[4,5]) [device="cpu"] {
  %0: f32[4,5] = fused[name="with_concat"] %x {
    ^(%a: f32[4,3]):
    %0: f32[4,2] = full[value=-1.5]
    %1: f32[4,5] = concat[dim=1] %0, %a
    %2: f32[4,5] = exp %1
    yield %2
  }
  %1: f32[4,5] = fused[name="plain"] %y {
    ^(%b: f32[4,5]):
    %0: f32[4,5] = exp %b
    %1: f32[4,5] = neg %0
    yield %1
  }
  return %0, %1
}
""")
    builder = WrapperBuilder(g)
    concat_region, plain_region = g.ops
    assert not builder.elementwise(concat_region) and builder.elementwise(plain_region)

"""The generated module: readable wrapper text, on-disk cache by content hash, and execution mode."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from ember.codegen import compile_graph
from ember.codegen.code_cache import content_hash, kernel_file_text, write_module
from ember.codegen.size_printer import size_to_python
from ember.ir import parse, symbol
from ember.options import Options

from codegen_check import parse_on, random_tensor

IR = """
func @mlp[s0](%x: f32[s0,16], %b: f32[16]) -> (f32[s0], f32[s0,16]) [device="cpu"] {
  %0: f32[s0,16] = add %x, %b
  %1: f32[s0,16] = relu %0
  %2: f32[s0] = reduce_sum[axes=(1,), keepdim=False] %1
  return %2, %1
}
"""


def test_wrapper_is_readable():
    compiled = compile_graph(parse(IR))
    src = compiled.wrapper_source
    lines = src.splitlines()
    assert lines[0] == "def call(inputs, s0):"
    assert "    x, b = inputs" in lines
    assert "    d0 = 16*s0" in lines  # symbolic sizes computed once, before any launch
    launches = [i for i, l in enumerate(lines) if l.strip().startswith("launch_")]
    assert lines.index("    d0 = 16*s0") < min(launches)
    for comment in ("# %0: f32[s0,16] = add %x, %b", "# %1: f32[s0,16] = relu %0",
                    "# %2: f32[s0] = reduce_sum[axes=(1,), keepdim=False] %1"):
        assert "    " + comment in lines
    assert len(launches) == compiled.num_kernels == 3
    for name in compiled.kernels:  # each kernel has its module-level Launcher
        assert f"launch_{name} = Launcher({name}, DEVICE, num_warps=" in compiled.module_source
    assert lines[-1] == "    return [buf2, buf1]"
    assert set(compiled.kernels) == {"k0_add", "k1_relu", "k2_reduce_sum"}
    for name, source in compiled.kernels.items():
        assert source.startswith("@triton.jit\ndef " + name + "(")
        # Each kernel in a file of its own, loaded by the module; its text is the kernel's.
        file = compiled.module_path.with_name(f"{content_hash(kernel_file_text(source, True))}.py")
        assert f"{name} = kernel_from(__file__, {file.stem!r}, {name!r}, INTERPRET)" in compiled.module_source
        assert file.read_text().endswith("\n\n\n" + source)
        assert getattr(compiled_module(compiled), name).fn.__code__.co_filename == str(file)
    assert compiled.externs == []


def compiled_module(compiled):
    import sys
    return sys.modules[f"ember_generated_{compiled.module_path.stem}"]


def test_two_modules_share_a_kernels_file():
    """Triton keys a compiled kernel by the line it starts on too: a kernel in a file of its own
    is one file, one JITFunction, whichever graph's module loads it."""
    one = compile_graph(parse(IR))
    # One more op at the end: a longer IR in the module's header, the same first three kernels.
    two = compile_graph(parse(IR.replace("  return %2, %1", "  %3: f32[s0] = neg %2\n  return %3, %1")
                              .replace("-> (f32[s0], f32[s0,16])", "-> (f32[s0], f32[s0,16])")))
    assert one.module_path != two.module_path and set(one.kernels) < set(two.kernels)
    for name in one.kernels:
        assert getattr(compiled_module(one), name) is getattr(compiled_module(two), name)


def test_identical_ops_share_one_kernel():
    g = parse("""
func @f(%x: f32[8], %y: f32[8]) -> (f32[8]) [device="cpu"] {
  %0: f32[8] = mul %x, %y
  %1: f32[8] = mul %0, %y
  return %1
}
""")
    compiled = compile_graph(g)
    assert list(compiled.kernels) == ["k0_mul"] and compiled.num_kernels == 2
    x, y = random_tensor((8,), torch.float32), random_tensor((8,), torch.float32)
    torch.testing.assert_close(compiled([x, y])[0], x * y * y)


def test_second_compile_reuses_the_module_file(tmp_path):
    options = Options(cache_dir=str(tmp_path))
    first = compile_graph(parse(IR), options)
    files = sorted((tmp_path / "code").iterdir())
    assert first.module_path in files and len(files) == 1 + len(first.kernels)  # the module, a file per kernel
    stamp = first.module_path.stat().st_mtime_ns
    second = compile_graph(parse(IR), options)
    assert second.module_path == first.module_path
    assert sorted((tmp_path / "code").iterdir()) == files          # nothing new written
    assert first.module_path.stat().st_mtime_ns == stamp           # nor rewritten
    assert second._call is first._call                              # same imported module, same kernels
    x, b = random_tensor((3, 16), torch.float32), random_tensor((16,), torch.float32)
    torch.testing.assert_close(second([x, b])[0], torch.relu(x + b).sum(1))


def test_different_graph_gets_its_own_file(tmp_path):
    options = Options(cache_dir=str(tmp_path))
    a = compile_graph(parse(IR), options)
    b = compile_graph(parse(IR.replace("relu", "sigmoid")), options)
    assert a.module_path != b.module_path
    # Two modules; a's three kernels, and b's sigmoid (its add and sum are a's: a file each, shared).
    assert len(list((tmp_path / "code").iterdir())) == 2 + 3 + 1


def test_cache_lives_under_the_cache_dir_only(tmp_path):
    compiled = compile_graph(parse(IR), Options(cache_dir=str(tmp_path)))
    assert compiled.module_path.parent == tmp_path / "code"
    repo = Path(__file__).resolve().parents[2]
    assert repo not in compiled.module_path.resolve().parents


def test_damaged_cache_file_is_rewritten(tmp_path):
    path, written = write_module(str(tmp_path), "x = 1\n")
    assert written
    path.write_text("x = 1\nhalf a fil")
    again, written = write_module(str(tmp_path), "x = 1\n")
    assert again == path and written and path.read_text() == "x = 1\n"
    assert [p.name for p in (tmp_path / "code").iterdir()] == [path.name]  # no temp files left


def test_cpu_graph_runs_without_triton_interpret_set(tmp_path):
    # CPU graphs must use the interpreter even when the user never set TRITON_INTERPRET.
    (tmp_path / "g.ir").write_text(IR)
    script = textwrap.dedent(f"""
        import os
        import torch
        from ember.codegen import compile_graph
        from ember.ir import parse
        g = parse(open({str(tmp_path / "g.ir")!r}).read())
        x, b = torch.randn(5, 16), torch.randn(16)
        out = compile_graph(g)([x, b])
        torch.testing.assert_close(out[0], torch.relu(x + b).sum(1))
        assert "TRITON_INTERPRET" not in os.environ
        print("OK")
    """)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["EMBER_CACHE_DIR"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


def test_size_expressions_print_as_integer_python():
    s0, s1 = symbol("s0"), symbol("s1")
    import sympy
    cases = {s0 * 16: 16 * 7, sympy.floor(s0 / 2) + 1: 7 // 2 + 1, sympy.ceiling(s0 / 4): -(-7 // 4),
             sympy.Mod(s0, 3) * s1: (7 % 3) * 5, sympy.Max(s0 - 9, 0): 0, (s0 * s1 + s1) / 2: (7 * 5 + 5) // 2}
    for expr, want in cases.items():
        assert eval(size_to_python(expr), {"s0": 7, "s1": 5}) == want, (expr, size_to_python(expr))


@pytest.mark.gpu
def test_cuda_and_cpu_graphs_in_one_process():
    # A CUDA graph's kernels compile natively, a CPU graph's run interpreted, side by side.
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction
    on_gpu = compile_graph(parse_on("cuda", IR))
    on_cpu = compile_graph(parse(IR))
    assert "INTERPRET = False" in on_gpu.module_source and "INTERPRET = True" in on_cpu.module_source
    assert isinstance(on_gpu._call.__globals__["k0_add"], JITFunction)
    assert isinstance(on_cpu._call.__globals__["k0_add"], InterpretedFunction)
    x, b = random_tensor((5, 16), torch.float32), random_tensor((16,), torch.float32)
    want = torch.relu(x + b).sum(1)
    torch.testing.assert_close(on_cpu([x, b])[0], want)
    torch.testing.assert_close(on_gpu([x.cuda(), b.cuda()])[0].cpu(), want)


def test_the_scratch_folder_is_one_per_process_and_gone_at_exit():
    """Modules written without a cache folder (a Chooser made with none) go to one temporary
    folder per process, which is removed when the process exits: nothing is left in /tmp."""
    script = textwrap.dedent("""
        from ember.codegen.code_cache import scratch_dir, write_module
        a = scratch_dir()
        path, written = write_module(a, "x = 1\\n")
        assert scratch_dir() == a and written and path.exists()
        print(a)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    folder = Path(done.stdout.strip().splitlines()[-1])
    assert folder.name.startswith("ember-scratch-") and not folder.exists()

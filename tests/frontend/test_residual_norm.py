"""Through torch.compile: a Linear on [B,T,K], the residual add and the LayerNorm / RMSNorm after
it (GPT-2's, BERT's, Llama's, ViT's blocks) are two kernels: the matmul with only its bias, and one
row kernel that adds the residual, writes the sum and normalizes (move_reshapes, into a
reduction). With the library matmul that is addmm (or mm) plus the same row kernel, as
TorchInductor runs it; it used to be a library call, an epilogue kernel and the norm's kernel."""
import torch
import torch.nn.functional as F

from ember.codegen.matmul_emit import FixedChoice
from ember.codegen.wrapper import generate_module
from ember.ir import parse


def _regions(report) -> dict[str, list[str]]:
    return {r["name"]: r["ops"] for r in report["fusion"]}


def _library_kernels(dump) -> tuple[int, str]:
    """Kernel launches and the wrapper text with every matmul given to the library."""
    (final,) = dump.rglob("final.ir")
    gen = generate_module(parse(final.read_text()), FixedChoice("cpu", "library"))
    return gen.num_kernels, gen.wrapper_source


def test_linear_residual_layer_norm(check, tmp_path):
    torch.manual_seed(0)
    lin, norm = torch.nn.Linear(16, 24), torch.nn.LayerNorm(24)

    def block(x, r):
        h = r + lin(x)
        return h, norm(h)
    with torch.no_grad():
        (report,) = check(block, torch.randn(2, 5, 16), torch.randn(2, 5, 24), atol=1e-4, rtol=1e-4)
    regions = _regions(report)
    assert regions["matmul0"] == ["matmul", "add"]
    (norm_ops,) = [ops for name, ops in regions.items() if name.startswith("fused")]
    assert norm_ops[0] == "add" and "reduce_sum" in norm_ops and "rsqrt" in norm_ops
    assert report["kernel_count"] == 2
    kernels, src = _library_kernels(tmp_path / "dump0")
    assert kernels == 1 and "aten.addmm" in src and "_epilogue(" not in src


def test_linear_residual_rms_norm_bf16(check, tmp_path):
    # Llama: no bias, the sum upcast to f32 for the norm. The upcast stays in the norm's kernel
    # (no f32 copy of the sum is written) and the matmul is bare.
    torch.manual_seed(0)
    w = torch.randn(24, 16, dtype=torch.bfloat16) / 4
    g = torch.rand(24, dtype=torch.bfloat16) + 0.5

    def block(x, r):
        h = r + F.linear(x, w)
        hf = h.float()
        return h, g * (hf * torch.rsqrt(hf.pow(2).mean(-1, keepdim=True) + 1e-6)).to(torch.bfloat16)
    x, r = torch.randn(2, 5, 16, dtype=torch.bfloat16), torch.randn(2, 5, 24, dtype=torch.bfloat16)
    (report,) = check(block, x, r, atol=2e-2, rtol=2e-2)
    regions = _regions(report)
    assert not any(name.startswith("matmul") for name in regions)   # the matmul alone: no epilogue
    (norm_ops,) = regions.values()
    assert norm_ops[:2] == ["add", "cast"] and "reduce_sum" in norm_ops
    assert report["kernel_count"] == 2
    kernels, src = _library_kernels(tmp_path / "dump0")
    assert kernels == 1 and "torch.mm(" in src


def test_residual_added_before_the_unflattening_reshape(check, tmp_path):
    # The residual added on [B*T, N] and the sum reshaped for the norm: the reshape moves above
    # the add (onto the bias add's result and the residual, both views), which joins the norm.
    torch.manual_seed(0)
    lin, norm = torch.nn.Linear(16, 24), torch.nn.LayerNorm(24)

    def block(x, r):
        h = lin(x.view(-1, 16)) + r.view(-1, 24)
        return h, norm(h.view(2, 5, 24))
    with torch.no_grad():
        (report,) = check(block, torch.randn(2, 5, 16), torch.randn(2, 5, 24), atol=1e-4, rtol=1e-4)
    regions = _regions(report)
    assert regions["matmul0"] == ["matmul", "add"]
    assert report["kernel_count"] == 2
    kernels, _ = _library_kernels(tmp_path / "dump0")
    assert kernels == 1


def test_a_norm_over_a_split_dim_keeps_its_reshape(check):
    # The reshape splits the normalized dim ([B*T, 24] -> [B*T, 2, 12], norm over the 12): the
    # residual's [24] bias cannot follow it, so the add stays with the matmul. Values still match.
    torch.manual_seed(0)
    lin, norm = torch.nn.Linear(16, 24), torch.nn.LayerNorm(12)
    bias = torch.randn(24)

    def block(x):
        h = lin(x) + bias
        return norm(h.view(10, 2, 12))
    with torch.no_grad():
        (report,) = check(block, torch.randn(10, 16), atol=1e-4, rtol=1e-4)
    regions = _regions(report)
    assert regions["matmul0"][:2] == ["matmul", "add"] and len(regions["matmul0"]) == 3

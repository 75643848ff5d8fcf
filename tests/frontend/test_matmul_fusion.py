"""Through torch.compile: nn.Linear + GELU is one matmul template kernel (bias and GELU in its
epilogue), named in the fusion report, and matches eager. (A 3-d input is still two kernels: the
reshape back to 3-d sits between the bias add and the GELU; see docs/passes.md, fuse_matmul.)"""
import json

import torch
import torch.nn.functional as F


def test_linear_gelu_is_one_template_kernel(tmp_path):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(40, 24), torch.nn.GELU())
    x = torch.randn(20, 40)
    compiled = torch.compile(model, backend="ember", options={"dump_dir": str(tmp_path)})
    with torch.no_grad():
        got = compiled(x)
        want = F.gelu(F.linear(x, model[0].weight, model[0].bias))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    (report,) = [json.loads(p.read_text()) for p in tmp_path.rglob("report.json")]
    assert report["kernel_count"] == 1 and report["externs"] == []
    (region,) = report["fusion"]
    assert region["name"] == "matmul0" and region["ops"][:2] == ["matmul", "add"] and "erf" in region["ops"]
    assert report["autotune"][0]["choice"].startswith("mm_")
    assert "matmul0" in next(tmp_path.rglob("fusion.txt")).read_text()

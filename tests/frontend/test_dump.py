"""EMBER_DUMP_DIR: per graph, the IR before/after every pass, kernels, wrapper and report.json."""
import json

import torch

from ember.ir import parse


def test_dump_folder(dump_dir):
    torch._dynamo.reset()

    def f(x, w):
        return torch.sort((x @ w).softmax(-1), -1).values * 2

    x, w = torch.randn(4, 6, requires_grad=True), torch.randn(6, 5)
    # fuse is opt-in for now; name it so the dump's fusion report has something to list.
    torch.compile(f, backend="ember", options={"pipeline": "canonicalize,cse,dce,fuse"})(x, w).sum().backward()
    graphs = sorted(p.name for p in dump_dir.iterdir())
    assert any(g.endswith("_fw") for g in graphs) and any(g.endswith("_bw") for g in graphs), graphs
    for name in graphs:
        folder = dump_dir / name
        for required in ("00.input.ir", "final.ir", "wrapper.py", "report.json", "fx_graph.py"):
            assert (folder / required).is_file(), f"{name}/{required} missing"
        ir_files = sorted(folder.glob("*.ir"))
        assert len(ir_files) >= 3, "expected the IR after each pass"
        for p in ir_files:
            text = p.read_text()
            body = "\n".join(line for line in text.splitlines() if not line.startswith("//")) + "\n"
            assert str(parse(text)) == body, f"{p} does not print back identically"
        report = json.loads((folder / "report.json").read_text())
        assert report["graph"] == name
        for key in ("op_count", "kernel_count", "externs", "passes"):
            assert key in report
        assert report["kernel_count"] == len(list((folder / "kernels").glob("*.py")))
        memory = report["memory"]
        assert set(memory) == {"peak_bytes_planned", "peak_bytes_unplanned", "buffers", "arena_bytes",
                               "in_arena", "reused"}
        assert memory["buffers"] >= memory["in_arena"] + memory["reused"]
        if isinstance(memory["peak_bytes_planned"], int):  # concrete sizes (else sympy text)
            assert 0 <= memory["peak_bytes_planned"] <= memory["peak_bytes_unplanned"]
        for rec in report["passes"]:
            assert set(rec) >= {"name", "changed", "stats", "seconds"}
    fw = json.loads(next(dump_dir.glob("*_fw/report.json")).read_text())
    assert [e["target"] for e in fw["externs"]] == ["aten.sort.default"]
    assert "sort" in fw["externs"][0]["reason"]
    # The fusion report: softmax's pointwise parts run in fused regions.
    assert fw["fusion"] and all(r["ops"] and r["outputs"] >= 1 for r in fw["fusion"]), fw["fusion"]
    assert all(isinstance(r["bytes_saved"], int) and r["bytes_saved"] >= 0 for r in fw["fusion"]), fw["fusion"]
    assert any(r["bytes_saved"] > 0 for r in fw["fusion"]), fw["fusion"]  # the softmax region
    # ...and the pairs it left apart say why: the matmul and the sort extern bound the regions.
    rejected = fw["fusion_rejected"]
    assert all(set(r) >= {"producer", "consumer", "reason", "detail", "ir"} for r in rejected), rejected
    boundary = {(r["reason"], op) for r in rejected for op in (r["producer"], r["consumer"])}
    assert any(reason == "not-fusible-op" and op.endswith("= matmul") for reason, op in boundary), rejected
    assert any(reason == "not-fusible-op" and op.endswith("= extern[aten.sort.default]")
               for reason, op in boundary), rejected
    folder = next(dump_dir.glob("*_fw"))
    for r in rejected:  # the names are lines of the IR file the entry points at
        ir_text = (folder / r["ir"]).read_text()
        for op in (r["producer"], r["consumer"]):
            value, name = op.split(" = ")
            lines = [ln.strip() for ln in ir_text.splitlines() if ln.startswith(f"  {value}:")]
            assert len(lines) == 1 and f"= {name.split('[')[0]}" in lines[0], (op, r["ir"], lines)
    table = (folder / "fusion.txt").read_text()
    assert "fused regions" in table and "rejected pairs" in table and "not-fusible-op" in table, table

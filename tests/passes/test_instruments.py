import io

import pytest

from ember.ir import parse, print_graph
from ember.passes import (DumpIR, Instrument, PassContext, PassFailedError, PassResult, PassTiming, PrintAfter,
                          graph_pass, run_pipeline)


TEXT = """
func @f(%x: f32[4]) -> (f32[4]) {
  %0: f32[4] = neg %x
  %1: f32[4] = neg %0
  %2: f32[4] = exp %1
  return %2
}
"""


def test_print_after_named_pass():
    out = io.StringIO()
    g = parse(TEXT)
    run_pipeline(g, "canonicalize,cse,dce", PassContext(instruments=[PrintAfter("canonicalize", stream=out)]))
    text = out.getvalue()
    assert text.startswith("// ----- IR after canonicalize ----- //\nfunc @f")
    assert text.count("IR after") == 1


def test_print_after_all_only_if_changed():
    out = io.StringIO()
    run_pipeline(parse(TEXT), "canonicalize,cse,dce",
                 PassContext(instruments=[PrintAfter("all", only_if_changed=True, stream=out)]))
    headers = [ln for ln in out.getvalue().splitlines() if ln.startswith("// -----")]
    assert headers == ["// ----- IR after canonicalize ----- //", "// ----- IR after dce ----- //"]
    out = io.StringIO()
    run_pipeline(parse(TEXT), "cse", PassContext(instruments=[PrintAfter(stream=out)]))
    assert "// ----- IR after cse (no change) ----- //" in out.getvalue()


def test_print_after_defaults_to_stderr(capsys):
    run_pipeline(parse(TEXT), "dce", PassContext(instruments=[PrintAfter(("dce",))]))
    assert "IR after dce" in capsys.readouterr().err


def test_dump_ir_files_parse_back(tmp_path):
    dump = DumpIR(tmp_path / "dump")
    g = parse(TEXT)
    report = run_pipeline(g, "canonicalize,cse,dce", PassContext(instruments=[dump], disabled=("cse",)))
    names = sorted(p.name for p in (tmp_path / "dump").iterdir())
    assert names == ["00.input.ir", "01.canonicalize.ir", "03.dce.ir"]  # cse disabled: a gap
    assert [p.name for p in dump.files] == names
    for path, want in zip(sorted((tmp_path / "dump").iterdir()),
                          [print_graph(parse(TEXT)), report["canonicalize"].ir_after, report["dce"].ir_after]):
        text = path.read_text()
        assert text.startswith("// ")
        body = text.split("\n", 1)[1]
        assert body == want and print_graph(parse(text)) == body
    assert (tmp_path / "dump" / "03.dce.ir").read_text().split("\n", 1)[1] == print_graph(g)


def test_pass_timing_summary():
    timing = PassTiming()
    run_pipeline(parse(TEXT), "canonicalize,cse,dce,cse", PassContext(instruments=[timing]))
    assert [n for n, _ in timing.timings] == ["canonicalize", "cse", "dce", "cse"]
    assert set(timing.totals()) == {"canonicalize", "cse", "dce"}
    lines = timing.summary().splitlines()
    assert lines[0].split() == ["pass", "seconds", "%"] and lines[-1].startswith("total")
    assert len(lines) == 5


def test_keep_ir_and_no_ir_by_default():
    assert run_pipeline(parse(TEXT), "dce")["dce"].ir_after is None
    rec = run_pipeline(parse(TEXT), "dce", PassContext(keep_ir=True))["dce"]
    assert rec.ir_after == print_graph(parse(TEXT))


class Recorder(Instrument):
    def __init__(self):
        self.events = []

    def before_pipeline(self, g, specs):
        self.events.append(("start", [s.name for s in specs]))

    def before_pass(self, g, spec, index):
        self.events.append(("before", spec.name, index))

    def after_pass(self, g, record):
        self.events.append(("after", record.name, record.changed))

    def on_failure(self, g, spec, index, error):
        self.events.append(("failed", spec.name, type(error).__name__))

    def after_pipeline(self, report):
        self.events.append(("end", len(report.records)))


def test_hooks_in_order(fresh_registry, tmp_path):
    rec = Recorder()
    run_pipeline(parse(TEXT), "canonicalize,dce", PassContext(instruments=[rec]))
    assert rec.events == [("start", ["canonicalize", "dce"]), ("before", "canonicalize", 1),
                          ("after", "canonicalize", True), ("before", "dce", 2), ("after", "dce", True),
                          ("end", 2)]

    @graph_pass("fails")
    def fails(g, ctx):
        raise RuntimeError("no")

    rec = Recorder()
    with pytest.raises(PassFailedError):
        run_pipeline(parse(TEXT), "dce,fails", PassContext(instruments=[rec], reproducer_dir=str(tmp_path)))
    assert rec.events[-2:] == [("before", "fails", 2), ("failed", "fails", "PassFailedError")]


def test_a_broken_instrument_does_not_hide_the_pass_error(fresh_registry, tmp_path):
    class Broken(Instrument):
        def on_failure(self, g, spec, index, error):
            raise KeyError("instrument bug")

    @graph_pass("fails")
    def fails(g, ctx):
        return None

    with pytest.raises(PassFailedError, match="'fails' returned None") as info:
        run_pipeline(parse(TEXT), "fails", PassContext(instruments=[Broken()], reproducer_dir=str(tmp_path)))
    notes = getattr(info.value, "__notes__", None)
    if notes is not None:  # Python >= 3.11
        assert "instrument bug" in notes[0]


def test_instruments_do_not_change_the_result():
    plain = parse(TEXT)
    run_pipeline(plain, "canonicalize,cse,dce")
    watched = parse(TEXT)
    run_pipeline(watched, "canonicalize,cse,dce",
                 PassContext(instruments=[PrintAfter(stream=io.StringIO()), PassTiming(), Recorder()]))
    assert print_graph(plain) == print_graph(watched)
    assert PassResult(True).stats == {}

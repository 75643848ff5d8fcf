import os
from pathlib import Path

import pytest

from ember.ir import Graph, VerificationError, parse, print_graph
from ember.passes import (PassContext, PassFailedError, PassResult, PassSpec, UnknownPassError, graph_pass,
                          list_passes, read_reproducer, run_pipeline, run_reproducer)


TEXT = """
func @f(%x: f32[4]) -> (f32[4]) {
  %0: f32[4] = neg %x
  %1: f32[4] = neg %0
  %2: f32[4] = exp %1
  %3: f32[4] = exp %1
  %4: f32[4] = add %2, %3
  return %4
}
"""


def test_runs_in_order_in_place_and_reports():
    g = parse(TEXT)
    report = run_pipeline(g, "canonicalize,cse,dce")
    assert report.graph is g
    assert [r.name for r in report.records] == ["canonicalize", "cse", "dce"]
    assert [r.index for r in report.records] == [1, 2, 3]
    assert [r.changed for r in report.records] == [True, True, True]
    assert report["cse"].stats == {"merged": 1} and report["dce"].stats == {"removed": 1}
    assert all(r.seconds >= 0 and r.ir_after is None for r in report.records)
    assert report.pipeline == "canonicalize,cse,dce" and report.changed
    assert "02 cse: changed" in report.summary()
    assert [op.name for op in g.ops] == ["exp", "add"]


def test_accepts_pass_specs():
    g = parse(TEXT)
    report = run_pipeline(g, [PassSpec("dce")])
    assert report["dce"].stats == {"removed": 0}
    with pytest.raises(UnknownPassError):
        run_pipeline(g, [PassSpec("nope")])


def test_disabled_passes_are_skipped_and_listed():
    g = parse(TEXT)
    report = run_pipeline(g, "canonicalize,cse,dce", PassContext(disabled=("cse",)))
    assert report["cse"].skipped and not report["cse"].changed
    assert not report["canonicalize"].skipped
    assert sum(op.name == "exp" for op in g.ops) == 2  # cse did not run
    assert "02 cse: disabled" in report.summary()


def test_disabling_an_unknown_pass_is_an_error():
    with pytest.raises(UnknownPassError, match="did you mean 'cse'"):
        run_pipeline(parse(TEXT), "dce", PassContext(disabled=("cse_",)))


def test_context_is_a_with_block_and_nests():
    outer, inner = PassContext(), PassContext(verify=False)
    assert PassContext.current() is not outer
    with outer:
        assert PassContext.current() is outer
        with inner:
            assert PassContext.current() is inner
        assert PassContext.current() is outer
    assert PassContext.current() is not outer
    # run_pipeline without a ctx uses the current one.
    g = parse(TEXT)
    with PassContext(disabled="dce"):
        assert run_pipeline(g, "cse,dce")["dce"].skipped


def test_pass_sees_its_options_and_context(fresh_registry):
    seen = {}

    @graph_pass("peek", options={"k": 1, "name": "a"})
    def peek(g: Graph, ctx: PassContext) -> PassResult:
        seen["options"] = dict(ctx.pass_options)
        seen["current"] = PassContext.current() is ctx
        seen["name"] = ctx.current_pass
        return PassResult(changed=False)

    ctx = PassContext()
    report = run_pipeline(parse(TEXT), "peek{k=5}", ctx)
    assert seen == {"options": {"k": 5, "name": "a"}, "current": True, "name": "peek"}
    assert report["peek"].options == {"k": 5, "name": "a"}
    assert dict(ctx.pass_options) == {} and ctx.current_pass is None


def test_registration_rules(fresh_registry):
    @graph_pass("twice")
    def one(g, ctx):
        """First line is the description.

        More text."""
        return PassResult(False)

    assert list_passes()["twice"] == "First line is the description."
    with pytest.raises(ValueError, match="'twice' is already registered by .*test_manager"):
        graph_pass("twice")(one)
    graph_pass("twice", replace=True, description="new")(one)
    assert list_passes()["twice"] == "new"
    with pytest.raises(TypeError, match="needs a name"):
        graph_pass(one)
    with pytest.raises(ValueError, match="invalid pass name"):
        graph_pass("has space")
    with pytest.raises(TypeError, match="changed must be a bool"):
        PassResult(changed=3)
    with pytest.raises(TypeError, match="details must be a dict"):
        PassResult(changed=False, details=[("why", "not")])
    assert PassResult(False).details == {}  # passes that explain nothing need not say so
    assert set(list_passes()) >= {"canonicalize", "cse", "dce"}


# ----------------------------------------------------------------------------- failures


def _raising_pass():
    @graph_pass("explode")
    def explode(g: Graph, ctx: PassContext) -> PassResult:
        g.ops.clear()  # damage first: the caller's graph must still come back intact
        raise ValueError("boom in explode")


def test_failing_pass_names_itself_and_writes_a_reproducer(fresh_registry, tmp_path):
    _raising_pass()
    g = parse(TEXT)
    original = print_graph(g)
    with pytest.raises(PassFailedError) as info:
        run_pipeline(g, "canonicalize,explode,dce", PassContext(reproducer_dir=str(tmp_path)))
    err = info.value
    msg = str(err)
    assert "pass 'explode' (#2 of 3 in pipeline 'canonicalize,explode,dce') failed" in msg
    assert "ValueError: boom in explode" in msg
    assert isinstance(err.__cause__, ValueError)
    assert err.pass_name == "explode" and err.index == 2
    # The reproducer: named in the message, the failing pass's input (after canonicalize).
    path = Path(err.reproducer)
    assert path.parent == tmp_path and str(path) in msg
    text = path.read_text()
    assert text.splitlines()[1:4] == ["// pipeline: canonicalize,explode,dce", "// failing pass: explode",
                                      "// cause: ValueError: boom in explode"]
    assert print_graph(parse(text)) == print_graph(err.pass_input)
    canonicalized = parse(TEXT)
    run_pipeline(canonicalized, "canonicalize")
    assert print_graph(parse(text)) == print_graph(canonicalized)
    rep = read_reproducer(path)
    assert rep.failing_pass == "explode" and rep.pipeline == "canonicalize,explode,dce"
    # The caller's graph is restored, and there is a spare copy of the input.
    assert print_graph(g) == original and print_graph(err.input_graph) == original
    with pytest.raises(PassFailedError, match="boom in explode"):
        run_reproducer(path, PassContext(reproducer_dir=str(tmp_path)))


def test_reproducer_defaults_to_the_cache_dir(fresh_registry, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "cache"))
    _raising_pass()
    with pytest.raises(PassFailedError) as info:
        run_pipeline(parse(TEXT), "explode")
    assert Path(info.value.reproducer).parent == tmp_path / "cache" / "reproducers"


def test_unwritable_reproducer_dir_still_reports_the_pass(fresh_registry, tmp_path):
    _raising_pass()
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(PassFailedError, match="(?s)pass 'explode'.*no reproducer: writing to") as info:
        run_pipeline(parse(TEXT), "explode", PassContext(reproducer_dir=str(blocker)))
    assert info.value.reproducer is None


def test_pass_returning_none_is_reported(fresh_registry, tmp_path):
    @graph_pass("forgot-return")
    def forgot_return(g, ctx):
        pass

    with pytest.raises(PassFailedError, match="pass 'forgot-return' returned None; a pass must return PassResult"):
        run_pipeline(parse(TEXT), "forgot-return", PassContext(reproducer_dir=str(tmp_path)))


def test_verifier_catches_a_pass_that_breaks_the_graph(fresh_registry, tmp_path):
    @graph_pass("drop-first-op")
    def drop_first_op(g, ctx):
        g.erase(g.ops[0])  # its result is still used: the graph is now invalid
        return PassResult(changed=True)

    g = parse(TEXT)
    with pytest.raises(PassFailedError) as info:
        run_pipeline(g, "drop-first-op", PassContext(reproducer_dir=str(tmp_path)))
    msg = str(info.value)
    assert "pass 'drop-first-op'" in msg and "the verifier rejects the graph it produced" in msg
    assert "used before it is defined" in msg
    assert isinstance(info.value.__cause__, VerificationError)
    assert print_graph(g) == print_graph(parse(TEXT))
    # With verification off the broken graph goes through (the caller asked for it).
    run_pipeline(g, "drop-first-op", PassContext(verify=False))


def test_invalid_input_is_blamed_on_its_producer():
    g = parse(TEXT)
    g.ops.pop(0)
    with pytest.raises(VerificationError, match="input of pipeline 'dce' is invalid"):
        run_pipeline(g, "dce")


def test_reproducer_files_do_not_pile_up(fresh_registry, tmp_path):
    _raising_pass()
    for _ in range(2):
        with pytest.raises(PassFailedError):
            run_pipeline(parse(TEXT), "explode", PassContext(reproducer_dir=str(tmp_path)))
    assert len([p for p in os.listdir(tmp_path) if p.endswith(".ir")]) == 1

import pytest

from ember.options import Options, OptionsError
from ember.passes import (PassOptionError, PassResult, PassSpec, PipelineSyntaxError, UnknownPassError,
                          format_pipeline, graph_pass, parse_pipeline)


def test_names_whitespace_and_empty():
    assert parse_pipeline("canonicalize,cse,dce") == [PassSpec("canonicalize"), PassSpec("cse"), PassSpec("dce")]
    assert parse_pipeline("  canonicalize ,\n  cse,dce \n") == parse_pipeline("canonicalize,cse,dce")
    assert parse_pipeline("") == []
    assert parse_pipeline("   \n") == []


def test_option_values_are_typed():
    specs = parse_pipeline('p{i=3, n=-2, f=0.5, e=1e-3, inf=inf, t=true, F=false, s=bf16, r=2:4, '
                           'q="a,b{c}", qn="3", path=/tmp/x}', check_names=False)
    assert specs == [PassSpec("p", {"i": 3, "n": -2, "f": 0.5, "e": 1e-3, "inf": float("inf"), "t": True,
                                    "F": False, "s": "bf16", "r": "2:4", "q": "a,b{c}", "qn": "3",
                                    "path": "/tmp/x"})]
    assert type(specs[0].options["i"]) is int and type(specs[0].options["f"]) is float


def test_format_round_trips():
    text = 'a,b{x=1},c{f=0.25,q="x,y",s=bf16,t=true,z="3"},d{}'
    specs = parse_pipeline(text, check_names=False)
    out = format_pipeline(specs)
    assert out == 'a,b{x=1},c{f=0.25,q="x,y",s=bf16,t=true,z="3"},d'
    assert parse_pipeline(out, check_names=False) == specs


@pytest.mark.parametrize("text,column,fragment", [
    ("cse,,dce", 5, "expected a pass name"),
    ("cse,dce,", 8, "trailing ','"),
    ("cse dce", 5, "expected ',' between passes"),
    ("cse{a}", 6, "expected '=' after option 'a'"),
    ("cse{a=1", 8, "expected ',' or '}'"),
    ("cse{a=1,a=2}", 9, "option 'a' given twice"),
    ("cse{a=}", 7, "expected an option value"),
    ('cse{a="x}', 7, "bad quoted string"),
    ("1cse", 1, "expected a pass name"),
])
def test_syntax_errors_name_the_column(text, column, fragment):
    with pytest.raises(PipelineSyntaxError) as info:
        parse_pipeline(text, check_names=False)
    msg = str(info.value)
    assert f"column {column}:" in msg and fragment in msg
    # The caret sits under the offending character.
    line, caret = msg.splitlines()[1:3]
    assert line == "  " + text and caret.index("^") == column + 1


def test_multiline_errors_name_the_line():
    with pytest.raises(PipelineSyntaxError, match="line 2, column 5"):
        parse_pipeline("cse,\ndce,,x", check_names=False)


def test_unknown_pass_suggests_a_close_name():
    with pytest.raises(UnknownPassError) as info:
        parse_pipeline("canonicalize,csee,dce")
    msg = str(info.value)
    assert "unknown pass 'csee'" in msg and "did you mean 'cse'" in msg
    listed = msg.split("registered passes: ")[1].split(" (at")[0].split(", ")
    assert {"canonicalize", "cse", "dce"} <= set(listed) and listed == sorted(listed) and "column 14" in msg
    assert info.value.suggestion == "cse"
    with pytest.raises(UnknownPassError) as info:
        parse_pipeline("zzzzzz")
    assert "did you mean" not in str(info.value) and info.value.suggestion is None


def test_builtin_passes_take_no_options():
    with pytest.raises(PassOptionError, match="pass 'cse' has no option 'x'"):
        parse_pipeline("cse{x=1}")


def test_declared_options_are_checked(fresh_registry):
    @graph_pass("with-opts", options={"dtype": "bf16", "scale": 1.0, "n": 2, "on": True})
    def with_opts(g, ctx):
        return PassResult(False)

    assert parse_pipeline("with-opts{dtype=f16, scale=2}")[0].options == {"dtype": "f16", "scale": 2}
    with pytest.raises(PassOptionError, match="no option 'dtpye'; its options: dtype, n, on, scale"):
        parse_pipeline("with-opts{dtpye=f16}")
    with pytest.raises(PassOptionError, match="option 'n' takes a int, got float 2.5"):
        parse_pipeline("with-opts{n=2.5}")
    with pytest.raises(PassOptionError, match="option 'on' takes a bool"):
        parse_pipeline("with-opts{on=1}")
    with pytest.raises(PassOptionError, match='quote it: dtype="16"'):
        parse_pipeline("with-opts{dtype=16}")


def test_options_module_validates_the_pipeline():
    with pytest.raises(OptionsError, match="did you mean 'dce'"):
        Options.from_dict({"pipeline": "canonicalize,dse"})
    assert Options.from_dict({"pipeline": "cse,dce"}).pipeline == "cse,dce"

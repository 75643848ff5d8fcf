import importlib.util
import sys
import textwrap

from ember.passes import PassContext, PassSpec, pipeline_fingerprint


USER_PASS = '''
from ember.passes import PassResult, graph_pass

def helper(g):
    return {body!r}

@graph_pass("fp-user", replace=True, options={{"k": 1}})
def fp_user(g, ctx):
    return PassResult(changed=False, stats={{"n": len(helper(g))}})
'''


def _load(tmp_path, name: str, body: str):
    """Import a user module that registers fp-user; `body` changes the helper's source."""
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(USER_PASS.format(body=body)))
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    finally:
        del sys.modules[name]
    return mod


def test_deterministic_and_sensitive_to_names_order_and_options():
    fp = pipeline_fingerprint("canonicalize,cse,dce")
    assert fp == pipeline_fingerprint("canonicalize, cse, dce")
    assert fp == pipeline_fingerprint([PassSpec("canonicalize"), PassSpec("cse"), PassSpec("dce")])
    assert len(fp) == 64
    assert fp != pipeline_fingerprint("cse,canonicalize,dce")
    assert fp != pipeline_fingerprint("canonicalize,cse")
    assert fp != pipeline_fingerprint("canonicalize,cse,dce", PassContext(disabled=("cse",)))
    assert pipeline_fingerprint("canonicalize,dce") == \
        pipeline_fingerprint("canonicalize,cse,dce", PassContext(disabled=("cse",)))


def test_changes_when_a_user_pass_source_changes(fresh_registry, tmp_path):
    _load(tmp_path, "fp_user_v1", "one")
    fp1 = pipeline_fingerprint("cse,fp-user")
    assert fp1 == pipeline_fingerprint("cse,fp-user")
    # Only the helper next to the pass changed: still a different fingerprint.
    _load(tmp_path, "fp_user_v2", "two")
    fp2 = pipeline_fingerprint("cse,fp-user")
    assert fp2 != fp1
    # The same source again (another module name) gives the first fingerprint back.
    _load(tmp_path, "fp_user_v3", "one")
    assert pipeline_fingerprint("cse,fp-user") == fp1


def test_options_count_with_defaults_filled_in(fresh_registry, tmp_path):
    _load(tmp_path, "fp_user_opts", "one")
    assert pipeline_fingerprint("fp-user") == pipeline_fingerprint("fp-user{k=1}")
    assert pipeline_fingerprint("fp-user") != pipeline_fingerprint("fp-user{k=2}")


def test_passes_without_source_hash_their_code(fresh_registry):
    def define(expr: str):
        ns: dict = {}
        exec(textwrap.dedent(f'''
            from ember.passes import PassResult, graph_pass
            @graph_pass("fp-exec", replace=True)
            def fp_exec(g, ctx):
                return PassResult(changed={expr})
            '''), ns)

    define("False")
    a = pipeline_fingerprint("fp-exec")
    define("False")
    assert pipeline_fingerprint("fp-exec") == a
    define("1 == 2")
    assert pipeline_fingerprint("fp-exec") != a


def test_builtin_fingerprint_covers_its_rule_table():
    # ember's own code counts as whole files: the pass's module and every ember module whose
    # functions it reaches (the rule tables next to canonicalize, the rewrite driver).
    from ember.passes.fingerprint import _collect
    from ember.passes import get_pass
    parts: list[bytes] = []
    fn = get_pass("canonicalize").fn
    _collect(fn, fn.__module__, set(), parts)
    modules = {p.split()[1] for p in parts if p.startswith(b"module ")}
    for name in (b"ember.passes.canonicalize", b"ember.passes.constant_fold", b"ember.passes.rules_arith",
                 b"ember.passes.rules_views", b"ember.passes.rewrite"):
        assert name in modules
    assert len(parts) == len(modules), "each ember file is hashed once, never function by function"


EMBER_PASS = '''
from ember.passes import PassResult, graph_pass

# {comment}
@graph_pass("fp-ember", replace=True)
def fp_ember(g, ctx):
    return PassResult(changed=False)
'''


def test_an_ember_module_counts_as_its_whole_file(fresh_registry, tmp_path, monkeypatch):
    """A pass in ember's own package is hashed as its whole file (once per process): any edit
    there, even a comment, changes the fingerprint; the same text gives the same one back."""
    from ember.passes import fingerprint

    def load(comment: str) -> str:
        path = tmp_path / f"v{len(list(tmp_path.iterdir()))}.py"
        path.write_text(EMBER_PASS.format(comment=comment))
        spec = importlib.util.spec_from_file_location("ember._fp_test_pass", path)
        mod = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, "ember._fp_test_pass", mod)
        spec.loader.exec_module(mod)
        fingerprint._module_digest.cache_clear()  # a new file under the same module name
        return pipeline_fingerprint("fp-ember")

    one = load("one")
    assert load("two") != one
    assert load("one") == one

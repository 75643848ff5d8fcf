"""TuningKey and TuningCache on CPU: key changes, damaged files, concurrent writers, archives."""
import io
import json
import multiprocessing
import tarfile
import warnings
import zipfile

import pytest

from ember.autotune import ArchiveError, Candidate, TuningCache, TuningKey, TuningStats, tune
from ember.autotune.cache import SCHEMA, code_hash, entry_text
from ember.autotune.keys import device_name, shape_bucket

DECISION = {"name": "b64", "config": {"BLOCK": 64}, "timings_ms": {"b64": 0.5}}


def test_shape_bucket():
    assert shape_bucket((0, 1, 7, 16, 17, 32, 33, 1000, 1024, 1025)) == \
        (0, 1, 7, 16, 32, 32, 64, 1024, 1024, 2048)
    with pytest.raises(ValueError, match="negative"):
        shape_bucket((4, -1))


def test_device_name_on_cpu():
    assert device_name("cpu") == "cpu-interpreter"


def test_key_make_buckets_and_normalizes():
    import torch
    k = TuningKey.make("h", [(3, 1000)], [torch.float32], "cpu", "fp", triton="t", torch="p")
    assert k == TuningKey("h", ((3, 1024),), ("float32",), "cpu-interpreter", "t", "p", "fp")


def test_digest_is_stable(make_key):
    # A change here silently invalidates every user's cache: only bump keys.KEY_VERSION on purpose.
    key = TuningKey("k", ((1, 2),), ("float32",), "dev", "3.6.0", "2.13.0", "")
    assert key.digest() == "485d3d3bda9add89dc16cd6184cc7aa1b8981b2a533262daec2fbedb449a6fb5"
    assert TuningKey.from_dict(json.loads(json.dumps(make_key().to_dict()))) == make_key()


def test_put_get_and_layout(tmp_path, make_key):
    cache = TuningCache(tmp_path)
    key = make_key()
    assert cache.get(key) is None
    path = cache.put(key, DECISION)
    d = key.digest()
    assert path == tmp_path / "tuning" / d[:2] / f"{d}.json"
    doc = json.loads(path.read_text())
    assert doc["schema"] == SCHEMA and doc["key"] == key.to_dict()
    assert cache.get(key) == DECISION


@pytest.mark.parametrize("change", [
    {"triton": "3.7.0"}, {"torch": "2.14.0"}, {"device": "NVIDIA H200"},
    {"dtypes": ("bfloat16", "float16")}, {"shapes": (shape_bucket((1025, 64)), (64,))},
    {"pipeline": "q" * 64}, {"kernel": "b" * 64},
])
def test_each_key_field_change_is_a_miss(tmp_path, make_key, change):
    cache = TuningCache(tmp_path)
    cache.put(make_key(), DECISION)
    assert cache.get(make_key()) == DECISION
    assert cache.get(make_key(**change)) is None


def test_same_bucket_is_a_hit(tmp_path, make_key):
    cache = TuningCache(tmp_path)
    cache.put(make_key(shapes=(shape_bucket((1000, 64)), (64,))), DECISION)
    assert cache.get(make_key(shapes=(shape_bucket((1024, 60)), (64,)))) == DECISION


def _other_key_text(make_key):
    return entry_text(make_key(kernel="c" * 64), DECISION)


BAD_CONTENTS = {
    "truncated": lambda mk: entry_text(mk(), DECISION)[:40],
    "garbage": lambda mk: b"\xff\xfe\x00garbage\x81",
    "other key": _other_key_text,
    "old schema": lambda mk: entry_text(mk(), DECISION).replace(f'"schema": {SCHEMA}', '"schema": 0'),
    "not an object": lambda mk: "[1, 2]",
    "bad key field": lambda mk: json.dumps({"schema": SCHEMA, "key": {"kernel": 3}, "decision": {}}),
}


@pytest.mark.parametrize("kind", sorted(BAD_CONTENTS))
def test_damaged_file_warns_once_misses_then_is_rebuilt(tmp_path, make_key, kind):
    cache = TuningCache(tmp_path)
    key = make_key()
    path = cache.path_for(key)
    path.parent.mkdir(parents=True)
    content = BAD_CONTENTS[kind](make_key)
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # the once-only rule must be ember's, not the filter's
        assert cache.get(key) is None
        assert cache.get(key) is None
        assert TuningCache(tmp_path).get(key) is None  # a second cache object, same process
    assert len(caught) == 1, [str(w.message) for w in caught]
    assert str(path) in str(caught[0].message)
    cache.put(key, DECISION)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.get(key) == DECISION
    assert [e.problem for e in cache.entries()] == [None]


def test_entries_report_damaged_files(tmp_path, make_key):
    cache = TuningCache(tmp_path)
    cache.put(make_key(), DECISION)
    bad = cache.path_for(make_key(kernel="z" * 64))
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text("{")
    by_path = {e.path: e for e in cache.entries()}
    assert by_path[cache.path_for(make_key())].decision == DECISION
    assert "not valid JSON" in by_path[bad].problem


def _writer(root, worker, n, result):
    """A process hammering one shared key and its own keys; fails on any partial or foreign read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a damaged file seen by a reader is a failure here
            cache = TuningCache(root)
            shared = TuningKey("shared", ((64,),), ("float32",), "dev", "t", "p", "")
            for i in range(n):
                payload = {"name": f"w{worker}", "i": i, "pad": "x" * (1000 + 37 * i)}
                cache.put(shared, payload)
                cache.put(TuningKey(f"own{worker}-{i % 5}", ((64,),), ("float32",), "dev", "t", "p", ""),
                          payload)
                got = cache.get(shared)
                assert got is not None and got["pad"] == "x" * (1000 + 37 * got["i"]), got
        result.put((worker, "ok"))
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        result.put((worker, repr(e)))


def test_concurrent_writers_leave_only_valid_files(tmp_path):
    ctx = multiprocessing.get_context("fork")  # fork: no re-import of torch in each child
    result = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(tmp_path, w, 50, result)) for w in range(4)]
    for p in procs:
        p.start()
    outcomes = dict(result.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert outcomes == {w: "ok" for w in range(4)}
    cache = TuningCache(tmp_path)
    entries = cache.entries()
    assert len(entries) == 1 + 4 * 5
    assert all(e.problem is None for e in entries)
    assert not [p for p in (tmp_path / "tuning").rglob("*") if p.is_file() and p.suffix != ".json"]


def _populate(cache: TuningCache, make_key, n=3):
    keys = [make_key(kernel=f"{i}" * 64) for i in range(n)]
    for i, k in enumerate(keys):
        cache.put(k, {"name": f"c{i}", "config": {"BLOCK": 2 ** (i + 4)}})
    cache.code_dir.mkdir(parents=True, exist_ok=True)
    src = "def kernel():\n    return 1\n"
    (cache.code_dir / f"{code_hash(src)}.py").write_text(src)
    return keys


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_export_clear_import_round_trip(tmp_path, make_key, suffix):
    cache = TuningCache(tmp_path / "cache")
    keys = _populate(cache, make_key)
    before = {k: cache.get(k) for k in keys}
    archive = tmp_path / f"out{suffix}"
    assert cache.export(archive) == {"decisions": 3, "code_files": 1, "graphs": 0}
    removed = cache.clear()
    assert removed["decisions"] == 3 and removed["code_files"] == 1
    assert cache.entries() == [] and cache.code_files() == []
    other = TuningCache(tmp_path / "other-machine")
    report = other.import_(archive)
    assert (report.decisions, report.code_files, report.skipped) == (3, 1, [])
    assert {k: other.get(k) for k in keys} == before
    assert len(other.code_files()) == 1
    # The imported decision serves a tune: nothing is benchmarked.
    stats = TuningStats()
    cands = [Candidate(f"c{i}", {"BLOCK": 2 ** (i + 4)}, run=lambda: None) for i in range(3)]
    choice = tune(keys[1], cands, cache=other, timer=lambda fn: pytest.fail("timed"), stats=stats)
    assert (choice.name, choice.source, stats.benchmarks, stats.hits) == ("c1", "cache", 0, 1)


def test_export_leaves_damaged_files_out(tmp_path, make_key):
    cache = TuningCache(tmp_path / "cache")
    _populate(cache, make_key, n=1)
    bad = cache.path_for(make_key(kernel="z" * 64))
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text("{")
    (cache.code_dir / f"{'0' * 40}.py").write_text("not matching its name\n")
    assert cache.export(tmp_path / "out.tgz") == {"decisions": 1, "code_files": 1, "graphs": 0}


def _tar(path, members):
    with tarfile.open(path, "w:gz") as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


MANIFEST = ("ember-cache.json", json.dumps({"format": "ember-cache", "version": 1}).encode())


@pytest.mark.parametrize("evil", ["../escaped.json", "tuning/../../escaped.json", "/tmp/escaped.json"])
def test_import_rejects_path_traversal(tmp_path, make_key, evil):
    ok = entry_text(make_key(), DECISION).encode()
    d = make_key().digest()
    archive = _tar(tmp_path / "evil.tar.gz", [MANIFEST, (f"tuning/{d[:2]}/{d}.json", ok), (evil, b"{}")])
    cache = TuningCache(tmp_path / "cache")
    with pytest.raises(ArchiveError, match="outside the cache"):
        cache.import_(archive)
    assert cache.entries() == []  # nothing written, not even the valid member
    assert not (tmp_path / "escaped.json").exists()


def test_import_rejects_links_and_zip_traversal(tmp_path):
    link = tmp_path / "link.tar.gz"
    with tarfile.open(link, "w:gz") as t:
        info = tarfile.TarInfo("code/x.py")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(info)
    with pytest.raises(ArchiveError, match="link"):
        TuningCache(tmp_path / "c").import_(link)
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr(MANIFEST[0], MANIFEST[1])
        f.writestr("../../escaped.py", "x = 1\n")
    with pytest.raises(ArchiveError, match="outside the cache"):
        TuningCache(tmp_path / "c").import_(z)


def test_import_skips_bad_members_with_a_warning(tmp_path, make_key):
    good = entry_text(make_key(), DECISION).encode()
    d, d2 = make_key().digest(), make_key(kernel="q" * 64).digest()
    archive = _tar(tmp_path / "mixed.tar.gz", [
        MANIFEST, (f"tuning/{d[:2]}/{d}.json", good),
        (f"tuning/{d2[:2]}/{d2}.json", b"{truncated"),            # damaged decision
        (f"tuning/{d2[:2]}/{d2}.json".replace(d2[:2] + "/", "00/", 1), good),  # wrong folder/name
        (f"code/{'0' * 40}.py", b"x = 1\n"),                     # text does not match its name
        ("notes.txt", b"hello"),                                  # not a cache file
        (f"graphs/{d[:2]}/{d}.json", b'{"format": 1, "ir": "func @g"}'),  # a compiled graph
        (f"graphs/{d2[:2]}/{d2}.json", b'{"format": 1}'),          # one without its IR
    ])
    cache = TuningCache(tmp_path / "cache")
    with pytest.warns(UserWarning) as caught:
        report = cache.import_(archive)
    assert (report.decisions, report.code_files, report.graphs, len(report.skipped)) == (1, 0, 1, 5)
    assert len(caught) == 5 and all("mixed.tar.gz" in str(w.message) for w in caught)
    assert [p.stem for p in cache.graph_files()] == [d]
    assert cache.get(make_key()) == DECISION
    assert [e.problem for e in cache.entries()] == [None]


@pytest.mark.parametrize("content, match", [
    (None, "no such file"), (b"not an archive at all", "not a readable"),
    ("truncated", "not a readable"), ("no manifest", "not an ember cache archive"),
])
def test_import_unusable_archive_is_an_error(tmp_path, make_key, content, match):
    path = tmp_path / "in.tar.gz"
    cache = TuningCache(tmp_path / "cache")
    if content in ("truncated", "no manifest"):
        _populate(cache, make_key)
        cache.export(path)
        if content == "truncated":
            path.write_bytes(path.read_bytes()[:-40])
        else:
            _tar(path, [("code/x.py", b"")])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ArchiveError, match=match) as e:
        TuningCache(tmp_path / "fresh").import_(path)
    assert str(path) in str(e.value)


def test_code_hash_matches_codegen():
    from ember.codegen.code_cache import content_hash
    src = "import triton\n# é\n"
    assert code_hash(src) == content_hash(src)


def test_default_root_follows_ember_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "env-cache"))
    assert TuningCache().root == tmp_path / "env-cache"

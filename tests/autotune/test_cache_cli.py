"""`python -m ember cache {ls,clear,export,import}` as a user runs it (subprocess)."""
import io
import os
import subprocess
import sys
import tarfile

from ember.autotune import TuningCache
from ember.autotune.cache import code_hash


def ember(*args, cache_dir):
    env = {**os.environ, "EMBER_CACHE_DIR": str(cache_dir)}
    return subprocess.run([sys.executable, "-m", "ember", "cache", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=60)


def populate(root, make_key):
    cache = TuningCache(root)
    cache.put(make_key(), {"name": "b64", "config": {"BLOCK": 64}})
    cache.put(make_key(kernel="b" * 64), {"name": "cublas", "config": {}})
    src = "x = 1\n"
    cache.code_dir.mkdir(parents=True, exist_ok=True)
    (cache.code_dir / f"{code_hash(src)}.py").write_text(src)
    graph = cache.graphs_dir / "ab" / ("ab" + "0" * 62 + ".json")
    graph.parent.mkdir(parents=True)
    graph.write_text('{"format": 1, "ir": "func @g() -> () {\\n  return\\n}\\n"}')
    return cache


def test_ls_export_clear_import(tmp_path, make_key):
    root = tmp_path / "cache"
    cache = populate(root, make_key)
    bad = cache.path_for(make_key(kernel="z" * 64))
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text("{")
    bad_graph = cache.graphs_dir / "cd" / ("cd" + "0" * 62 + ".json")
    bad_graph.parent.mkdir(parents=True)
    bad_graph.write_text('{"format": 1}')  # no IR: not exported

    r = ember("ls", cache_dir=root)
    assert r.returncode == 0, r.stderr
    assert "3 decision(s)" in r.stdout and "1 code file(s)" in r.stdout and "2 compiled graph(s)" in r.stdout
    assert "b64 BLOCK=64" in r.stdout and "device='NVIDIA H100 80GB HBM3'" in r.stdout
    assert "INVALID (not valid JSON" in r.stdout and str(bad) in r.stdout

    archive = tmp_path / "exported.tar.gz"
    r = ember("export", archive, cache_dir=root)
    assert r.returncode == 0 and "exported 2 decision(s), 1 code file(s) and 1 compiled graph(s)" in r.stdout, r.stderr

    r = ember("clear", cache_dir=root)
    assert r.returncode == 0 and "3 decision(s), 1 code file(s), 2 compiled graph(s)" in r.stdout, r.stderr
    assert "0 decision(s)" in ember("ls", cache_dir=root).stdout

    r = ember("import", archive, cache_dir=root)
    assert r.returncode == 0 and "imported 2 decision(s), 1 code file(s) and 1 compiled graph(s)" in r.stdout, r.stderr
    assert TuningCache(root).get(make_key()) == {"name": "b64", "config": {"BLOCK": 64}}
    assert [p.name for p in TuningCache(root).graph_files()] == ["ab" + "0" * 62 + ".json"]


def test_cache_dir_flag_overrides_the_environment(tmp_path, make_key):
    populate(tmp_path / "flag", make_key)
    r = ember("ls", "--cache-dir", tmp_path / "flag", cache_dir=tmp_path / "env")
    assert r.returncode == 0 and "2 decision(s)" in r.stdout
    assert "0 decision(s)" in ember("ls", cache_dir=tmp_path / "env").stdout


def test_import_errors_name_the_file_and_exit_1(tmp_path):
    missing = tmp_path / "missing.tar.gz"
    r = ember("import", missing, cache_dir=tmp_path / "c")
    assert r.returncode == 1 and f"{missing}: no such file" in r.stderr

    corrupt = tmp_path / "corrupt.tgz"
    corrupt.write_bytes(b"\x1f\x8b this is not gzip")
    r = ember("import", corrupt, cache_dir=tmp_path / "c")
    assert r.returncode == 1 and str(corrupt) in r.stderr and "not a readable" in r.stderr

    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as t:
        for name in ("ember-cache.json", "../../escape.py"):
            data = b'{"format": "ember-cache", "version": 1}'
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    r = ember("import", evil, cache_dir=tmp_path / "c")
    assert r.returncode == 1 and "outside the cache" in r.stderr and "Traceback" not in r.stderr


def test_export_to_a_bad_name_or_folder_exits_1(tmp_path):
    r = ember("export", tmp_path / "out.rar", cache_dir=tmp_path / "c")
    assert r.returncode == 1 and "unknown archive type" in r.stderr
    r = ember("export", tmp_path / "no" / "such" / "out.zip", cache_dir=tmp_path / "c")
    assert r.returncode == 1 and "does not exist" in r.stderr

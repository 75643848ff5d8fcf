"""The persistent tuning cache: one JSON file per TuningKey, plus the generated-code folder.

Layout under the cache root (ember's `cache_dir` option; env EMBER_CACHE_DIR; ~/.cache/ember):

    tuning/<digest[:2]>/<digest>.json   {"schema": 1, "key": {...}, "decision": {...}, "written": t}
    code/<sha256[:40]>.py               generated modules (written by codegen/code_cache.py)
    graphs/<digest[:2]>/<digest>.json   compiled graphs (written and read by frontend/graph_cache.py;
                                        here they are only listed, cleared, exported and imported)

The two-character fan-out keeps folders small. The full key is stored in each file and compared on
every read, so a file whose content does not belong to its name (copied by hand, another ember
version, a hash collision) is a miss, never someone else's decision.

Concurrency: every write is a temp file in the same folder renamed over the target (atomic on
POSIX), so readers in any process see a whole old file or a whole new one; with several writers of
one key the last rename wins, and each candidate it could be is a complete, valid decision.

Damage: a file that cannot be read or parsed, has another schema or holds another key is reported
once per path per process (warnings.warn, naming the file and the cause), treated as a miss, and
overwritten by the next put. Nothing here raises on a bad file, so a broken cache costs a retune,
never a crash or a wrong kernel.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic_io import write_text_atomic
from .archive import ArchiveError, read_archive, write_archive
from .keys import BadKeyError, TuningKey

SCHEMA = 1
ARCHIVE_FORMAT, ARCHIVE_VERSION = "ember-cache", 1
MANIFEST = "ember-cache.json"
_DECISION_MEMBER = re.compile(r"tuning/([0-9a-f]{2})/([0-9a-f]{64})\.json")
_CODE_MEMBER = re.compile(r"code/([0-9a-f]{40})\.py")
_GRAPH_MEMBER = re.compile(r"graphs/([0-9a-f]{2})/([0-9a-f]{64})\.json")

# Paths already reported by this process; a put that rewrites a path forgets it, so a file that is
# damaged again later is reported again.
_warned: set[str] = set()


def graph_file_problem(data: bytes) -> str | None:
    """Why a graph cache file is not one (None: it looks like one). Only its shape is checked
    here; frontend/graph_cache.py validates the rest when it loads it, and rebuilds it if bad."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as e:
        return f"not valid JSON ({e})"
    if not isinstance(doc, dict) or not isinstance(doc.get("format"), int) or not isinstance(doc.get("ir"), str):
        return "not a compiled graph (no format and IR)"
    return None


class CorruptEntry(Exception):
    """Why a decision file is unusable (the message is the cause)."""


def code_hash(source: str) -> str:
    # Same rule as codegen/code_cache.content_hash (a test checks they agree). Not imported from
    # there: codegen will call the tuner, and the CLI should not need torch or Triton to import.
    return hashlib.sha256(source.encode()).hexdigest()[:40]


def parse_entry(data: bytes | str, digest: str) -> tuple[TuningKey, dict[str, Any]]:
    """Validate a decision file's content against the digest in its name; raise CorruptEntry."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError too
        raise CorruptEntry(f"not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise CorruptEntry(f"not a JSON object (a {type(doc).__name__})")
    if doc.get("schema") != SCHEMA:
        raise CorruptEntry(f"schema {doc.get('schema')!r}, expected {SCHEMA}")
    try:
        key = TuningKey.from_dict(doc.get("key"))
    except BadKeyError as e:
        raise CorruptEntry(str(e)) from None
    if key.digest() != digest:
        raise CorruptEntry("the key stored inside does not match the file name (a foreign file)")
    decision = doc.get("decision")
    if not isinstance(decision, dict):
        raise CorruptEntry("no 'decision' object")
    return key, decision


def entry_text(key: TuningKey, decision: dict[str, Any]) -> str:
    return json.dumps({"schema": SCHEMA, "key": key.to_dict(), "decision": decision,
                       "written": time.time()}, indent=1, sort_keys=True) + "\n"


def _report(path: Path, cause: str) -> None:
    if str(path) in _warned:
        return
    _warned.add(str(path))
    warnings.warn(f"ember tuning cache: {path}: {cause}; ignored, it will be rebuilt", stacklevel=3)


@dataclass(frozen=True)
class Entry:
    """One decision file as `entries()` found it; `problem` is set (and key/decision None) if bad."""
    path: Path
    key: TuningKey | None
    decision: dict[str, Any] | None
    size: int
    mtime: float
    problem: str | None = None


@dataclass
class ImportReport:
    decisions: int = 0
    code_files: int = 0
    graphs: int = 0
    skipped: list[str] = field(default_factory=list)  # "member: cause"


class TuningCache:
    def __init__(self, root: str | os.PathLike | None = None):
        if root is None:
            from ..options import Options  # the one place that reads EMBER_CACHE_DIR
            root = Options().cache_dir
        self.root = Path(root)

    @property
    def tuning_dir(self) -> Path:
        return self.root / "tuning"

    @property
    def code_dir(self) -> Path:
        return self.root / "code"

    @property
    def graphs_dir(self) -> Path:
        return self.root / "graphs"

    def path_for(self, key: TuningKey) -> Path:
        d = key.digest()
        return self.tuning_dir / d[:2] / f"{d}.json"

    def get(self, key: TuningKey) -> dict[str, Any] | None:
        """The stored decision for key, or None (absent, or damaged: then reported once)."""
        path = self.path_for(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            _report(path, f"cannot read ({e.strerror})")
            return None
        try:
            stored, decision = parse_entry(data, path.stem)
        except CorruptEntry as e:
            _report(path, str(e))
            return None
        if stored != key:  # only a sha256 collision gets here; checked because it is free
            _report(path, "holds a decision for another key")
            return None
        return decision

    def put(self, key: TuningKey, decision: dict[str, Any]) -> Path | None:
        """Store decision for key (atomically). A cache that cannot be written (read-only disk) is
        reported once and skipped: tuning still returns its answer, it is just not remembered."""
        text = entry_text(key, decision)  # a non-JSON decision is the caller's bug: raises here
        path = self.path_for(key)
        try:
            write_text_atomic(path, text)
        except OSError as e:
            _report(path, f"cannot write ({e.strerror})")
            return None
        _warned.discard(str(path))
        return path

    def entries(self) -> list[Entry]:
        """Every decision file, valid or not, sorted by path."""
        out = []
        for path in sorted(self.tuning_dir.glob("??/*.json")):
            try:
                st = path.stat()
                data = path.read_bytes()
            except FileNotFoundError:  # removed by a concurrent clear
                continue
            except OSError as e:
                out.append(Entry(path, None, None, 0, 0.0, problem=f"cannot read ({e.strerror})"))
                continue
            try:
                key, decision = parse_entry(data, path.stem)
            except CorruptEntry as e:
                out.append(Entry(path, None, None, st.st_size, st.st_mtime, problem=str(e)))
                continue
            out.append(Entry(path, key, decision, st.st_size, st.st_mtime))
        return out

    def code_files(self) -> list[Path]:
        return sorted(self.code_dir.glob("*.py"))

    def graph_files(self) -> list[Path]:
        return sorted(self.graphs_dir.glob("??/*.json"))

    def clear(self) -> dict[str, int]:
        """Remove tuning/, code/ and graphs/ (everything in them, temp files and __pycache__ included).

        Files go one by one and folders only when empty, so a process writing at the same time
        loses nothing but what it wrote before the clear. Returns counts of what was removed.
        """
        removed = {"decisions": 0, "code_files": 0, "graphs": 0, "other_files": 0}
        for folder in (self.tuning_dir, self.code_dir, self.graphs_dir):
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*"), reverse=True):  # children before parents
                if path.is_dir() and not path.is_symlink():
                    try:
                        path.rmdir()
                    except OSError:
                        pass  # not empty: a concurrent writer just added something
                    continue
                kind = ("decisions" if folder == self.tuning_dir and path.suffix == ".json" else
                        "code_files" if path.parent == self.code_dir and path.suffix == ".py" else
                        "graphs" if folder == self.graphs_dir and path.suffix == ".json" else
                        "other_files")
                try:
                    path.unlink()
                    removed[kind] += 1
                except FileNotFoundError:
                    pass
            try:
                folder.rmdir()
            except OSError:
                pass
        for path in list(_warned):
            if path.startswith(str(self.root)):
                _warned.discard(path)
        return removed

    def export(self, dest: str | os.PathLike) -> dict[str, int]:
        """Write valid decisions, code files and compiled graphs to a .tar.gz or .zip; damaged files
        are left out."""
        members: list[tuple[str, bytes]] = []
        n_dec = n_code = n_graphs = 0
        for e in self.entries():
            if e.problem is None:
                try:
                    data = e.path.read_bytes()
                except OSError:  # removed or replaced since entries() read it; leave it out
                    continue
                members.append((f"tuning/{e.path.parent.name}/{e.path.name}", data))
                n_dec += 1
        for path in self.code_files():
            try:
                data = path.read_bytes()
                ok = code_hash(data.decode("utf-8")) == path.stem
            except (OSError, UnicodeDecodeError):
                ok = False
            if ok:
                members.append((f"code/{path.name}", data))
                n_code += 1
        for path in self.graph_files():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if _GRAPH_MEMBER.fullmatch(f"graphs/{path.parent.name}/{path.name}") and graph_file_problem(data) is None:
                members.append((f"graphs/{path.parent.name}/{path.name}", data))
                n_graphs += 1
        manifest = {"format": ARCHIVE_FORMAT, "version": ARCHIVE_VERSION, "decisions": n_dec,
                    "code_files": n_code, "graphs": n_graphs, "created": time.time()}
        members.insert(0, (MANIFEST, json.dumps(manifest, indent=1).encode()))
        write_archive(dest, members)
        return {"decisions": n_dec, "code_files": n_code, "graphs": n_graphs}

    def import_(self, src: str | os.PathLike) -> ImportReport:
        """Merge an exported archive into this cache; an imported decision replaces a local one.

        Raises ArchiveError if the archive is unreadable, not an ember cache, or has a member that
        would land outside the cache (then nothing is written). Members that are individually bad
        (damaged JSON, a code file whose text does not match its name, an unknown path) are
        skipped with a warning and listed in the report.
        """
        members = read_archive(src)
        manifest = next((data for name, data in members if name == MANIFEST), None)
        if manifest is None:
            raise ArchiveError(f"{src}: not an ember cache archive (no {MANIFEST})")
        try:
            info = json.loads(manifest)
            ok = info.get("format") == ARCHIVE_FORMAT and info.get("version") == ARCHIVE_VERSION
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            raise ArchiveError(f"{src}: {MANIFEST} is not an ember cache manifest of version "
                               f"{ARCHIVE_VERSION}")
        report = ImportReport()
        for name, data in members:
            if name == MANIFEST:
                continue
            cause = self._import_member(name, data, report)
            if cause is not None:
                report.skipped.append(f"{name}: {cause}")
                warnings.warn(f"ember cache import: {src}: {name}: {cause}; skipped", stacklevel=2)
        return report

    def _import_member(self, name: str, data: bytes, report: ImportReport) -> str | None:
        """Write one member if valid; return why it was skipped otherwise."""
        m = _DECISION_MEMBER.fullmatch(name)
        if m:
            prefix, digest = m.groups()
            if prefix != digest[:2]:
                return "folder does not match the file name"
            try:
                text = data.decode("utf-8")  # json.loads alone would also take UTF-16/32
                parse_entry(text, digest)
            except UnicodeDecodeError:
                return "not UTF-8 text"
            except CorruptEntry as e:
                return str(e)
            path = self.tuning_dir / prefix / f"{digest}.json"
            write_text_atomic(path, text)
            _warned.discard(str(path))
            report.decisions += 1
            return None
        m = _CODE_MEMBER.fullmatch(name)
        if m:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                return "not UTF-8 text"
            if code_hash(text) != m.group(1):
                return "text does not match the hash in its name"
            write_text_atomic(self.code_dir / f"{m.group(1)}.py", text)
            report.code_files += 1
            return None
        m = _GRAPH_MEMBER.fullmatch(name)
        if m:
            prefix, digest = m.groups()
            if prefix != digest[:2]:
                return "folder does not match the file name"
            problem = graph_file_problem(data)
            if problem is not None:
                return problem
            write_text_atomic(self.graphs_dir / prefix / f"{digest}.json", data.decode("utf-8"))
            report.graphs += 1
            return None
        return "not a file an ember cache holds"


__all__ = ["TuningCache", "Entry", "ImportReport", "CorruptEntry", "ArchiveError", "parse_entry",
           "SCHEMA"]

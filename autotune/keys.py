"""TuningKey: everything a tuning decision depends on, and its stable digest.

A decision measured for one kernel on one GPU must never be reused where it could be wrong, and
must be reused wherever it is right. So the key holds:
  * kernel: the hash of the kernel's (or template's) source, so editing a template retunes;
  * shapes: the operand shapes after `shape_bucket` (see there), so nearby sizes share a decision;
  * dtypes: the operand dtypes, as torch prints them without the "torch." prefix;
  * device: `device_name(...)`, e.g. "NVIDIA H100 80GB HBM3"; "cpu-interpreter" on the CPU;
  * triton / torch: library versions (a new Triton compiles the same source differently);
  * pipeline: `ember.passes.pipeline_fingerprint(...)` of the pipeline that produced the kernel, so
    the source hash of every pass in it, user passes included, is part of the key.
The digest is the sha256 of the key's canonical JSON (sorted keys, no whitespace, a version tag),
so it is the same in every process and on every machine, unlike Python's hash().
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

# Bump when the meaning of a field changes; old cache files then simply stop matching.
KEY_VERSION = 1
CPU_INTERPRETER = "cpu-interpreter"
# Dims up to this size are kept exactly: decode batches, head counts and small tiles are where the
# best kernel flips (GEMV vs tiled, split-K), and there are few such sizes.
EXACT_DIM_LIMIT = 16


class BadKeyError(ValueError):
    """A key dict read from disk or an archive is not a valid TuningKey (message says why)."""


def shape_bucket(shape: Iterable[int]) -> tuple[int, ...]:
    """Round each dim: dims <= 16 stay exact, larger dims go up to the next power of two.

    Above 16 the best launch config changes slowly with size, and a power-of-two bucket bounds the
    number of tunes a dynamic dim can cause to one per octave (17..32, 33..64, ..., 1025..2048).
    """
    out = []
    for d in shape:
        d = int(d)
        if d < 0:
            raise ValueError(f"shape_bucket: negative dim {d} in {tuple(shape)}")
        out.append(d if d <= EXACT_DIM_LIMIT else 1 << (d - 1).bit_length())
    return tuple(out)


def device_name(device: Any) -> str:
    """The name tuning results are keyed by: the GPU's marketing name, "cpu-interpreter" on CPU."""
    import torch  # lazy: the cache and the CLI do not need torch

    device = torch.device(device)
    if device.type == "cpu":
        return CPU_INTERPRETER
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.get_device_name(index)
    return device.type


def dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def library_versions() -> tuple[str, str]:
    """(triton version, torch version) of this process."""
    import torch
    import triton
    return triton.__version__, torch.__version__


@dataclass(frozen=True)
class TuningKey:
    kernel: str
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]
    device: str
    triton: str
    torch: str
    pipeline: str = ""

    @classmethod
    def make(cls, kernel: str, shapes: Sequence[Sequence[int]], dtypes: Sequence[Any], device: Any,
             pipeline: str = "", *, triton: str | None = None, torch: str | None = None) -> "TuningKey":
        """Build a key from raw operand shapes (bucketed here), dtypes and a torch device."""
        if triton is None or torch is None:
            t, p = library_versions()
            triton = t if triton is None else triton
            torch = p if torch is None else torch
        return cls(kernel=kernel, shapes=tuple(shape_bucket(s) for s in shapes),
                   dtypes=tuple(dtype_name(d) for d in dtypes), device=device_name(device),
                   triton=triton, torch=torch, pipeline=pipeline)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["shapes"] = [list(s) for s in self.shapes]
        d["dtypes"] = list(self.dtypes)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "TuningKey":
        """Inverse of to_dict; raises BadKeyError naming the first bad field (input may be hostile)."""
        if not isinstance(d, dict):
            raise BadKeyError(f"key is a {type(d).__name__}, not an object")
        names = [f.name for f in dataclasses.fields(cls)]
        if sorted(d) != sorted(names):
            raise BadKeyError(f"key fields {sorted(d)} are not {sorted(names)}")
        for name in ("kernel", "device", "triton", "torch", "pipeline"):
            if not isinstance(d[name], str):
                raise BadKeyError(f"key field {name!r} is not a string")
        shapes = d["shapes"]
        if not (isinstance(shapes, list) and all(
                isinstance(s, list) and all(type(x) is int and x >= 0 for x in s) for s in shapes)):
            raise BadKeyError("key field 'shapes' is not a list of lists of non-negative ints")
        if not (isinstance(d["dtypes"], list) and all(isinstance(x, str) for x in d["dtypes"])):
            raise BadKeyError("key field 'dtypes' is not a list of strings")
        return cls(kernel=d["kernel"], shapes=tuple(tuple(s) for s in shapes),
                   dtypes=tuple(d["dtypes"]), device=d["device"], triton=d["triton"],
                   torch=d["torch"], pipeline=d["pipeline"])

    def canonical_json(self) -> str:
        return json.dumps({"v": KEY_VERSION, **self.to_dict()}, sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        """64 hex chars; the cache file name."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def summary(self) -> str:
        """One line for `python -m ember cache ls`."""
        shapes = ",".join("x".join(map(str, s)) or "()" for s in self.shapes)
        return (f"kernel={self.kernel[:12]} shapes={shapes} dtypes={','.join(self.dtypes)} "
                f"device={self.device!r} triton={self.triton}")

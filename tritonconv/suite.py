"""Suite files: their schema, validation, shape selection and the suites shipped with the package
(tritonconv/suites/*.json, package data: `CONV_SUITE`, `GEMM_SUITE`). The one loader of tune, bench, compile,
bench/*.py and the tests. Torch-free until a problem is built (the CLIs name the default suite in `--help`).

Conv suite schema (JSON):
    {"about": "free text (optional)",
     "shapes": [                                   # a non-empty list of objects with these fields only:
        {"name": "r50_l1_3x3",                     # optional, unique text (default "shape<i>")
         "n": 32, "c": 64, "h": 56, "w": 56,       # required positive integers: batch, input channels, height, width
         "k": 64, "r": 3, "s": 3,                  # required positive integers: output channels, filter height, width
         "stride": 1, "pad": 1, "dilation": 1,     # optional: an integer or an [h, w] pair (defaults 1, 0, 1);
                                                   #   stride and dilation positive, pad non-negative
         "groups": 1}]}                            # optional positive integer dividing c and k (default 1)
A GEMM suite has the same top level; its shapes are {"name": ..., "m": M, "n": N, "k": K} (C[m,n] = A[m,k] @ B[k,n]).
Integers must be JSON integers: 8.7, "8", true and 8.0 are rejected, never truncated. Every error names the file,
the entry and the field.

`--shapes` (everywhere): comma-separated glob patterns matched against whole shape names (`r50_*`, `*dw*`; a
name without wildcards matches exactly that shape); a pattern that matches no shape is an error.
"""
from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from .errors import InvalidInputError

REQUIRED = ("n", "c", "h", "w", "k", "r", "s")
PAIRS = {"stride": (1, 1), "pad": (0, 0), "dilation": (1, 1)}  # field -> (default, smallest allowed value)
FIELDS = ("name", *REQUIRED, *PAIRS, "groups")
TOP_LEVEL = ("about", "shapes")
GEMM_FIELDS = ("name", "m", "n", "k")
MAX_SUITE_BYTES = 16 * 2**20
SUITES_DIR = Path(__file__).resolve().parent / "suites"
CONV_SUITE = SUITES_DIR / "conv2d.json"
GEMM_SUITE = SUITES_DIR / "gemm.json"


@dataclass(frozen=True)
class SuiteShape:
    """One validated suite entry."""

    name: str
    n: int
    c: int
    h: int
    w: int
    k: int
    r: int
    s: int
    stride: tuple[int, int] = (1, 1)
    pad: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def problem(self, *, dtype: str = "float16", layout: str = "nhwc", precision: str = ""):
        """The ConvProblem of this shape in `dtype` (any alias, or "int8"), `layout` and `precision`."""
        from .enums import canonical_dtype
        from .problem import ConvProblem

        return ConvProblem(
            n=self.n, c=self.c, h=self.h, w=self.w, k=self.k, r=self.r, s=self.s,
            stride_h=self.stride[0], stride_w=self.stride[1], pad_h=self.pad[0], pad_w=self.pad[1],
            dilation_h=self.dilation[0], dilation_w=self.dilation[1], groups=self.groups,
            dtype=canonical_dtype(dtype, quantized=True), layout=layout, precision=precision,
        )


@dataclass(frozen=True)
class GemmShape:
    """One validated GEMM suite entry: C[m,n] = A[m,k] @ B[k,n]."""

    name: str
    m: int
    n: int
    k: int


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _named_entry(entry: Any, fields: tuple[str, ...], *, where: str, default_name: str) -> tuple[str, str]:
    """Check that a suite entry is an object with only `fields`; its name, and `where` naming it for later errors."""
    if not isinstance(entry, dict):
        raise InvalidInputError(f"{where}: a shape must be an object with fields {', '.join(fields)}, got {entry!r:.80}")
    name = entry.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"{where}: field 'name' must be non-empty text, got {name!r:.80}")
    where = f"{where} ({name!r})" if "name" in entry else where
    unknown = [key for key in entry if key not in fields]
    if unknown:
        raise InvalidInputError(f"{where}: unknown field {unknown[0]!r:.80}; the fields are {', '.join(fields)}")
    return name, where


def parse_shape(entry: Any, *, where: str, default_name: str = "shape") -> SuiteShape:
    """Validate one suite entry (a dict); errors start with `where` (e.g. "suite.json, shape #3")."""
    name, where = _named_entry(entry, FIELDS, where=where, default_name=default_name)
    missing = [key for key in REQUIRED if key not in entry]
    if missing:
        raise InvalidInputError(f"{where}: missing required field {missing[0]!r} (required: {', '.join(REQUIRED)})")
    values: dict[str, Any] = {}
    for key in REQUIRED + ("groups",):
        value = entry.get(key, 1)
        if not _is_int(value) or value < 1:
            raise InvalidInputError(f"{where}: field {key!r} must be a positive integer, got {value!r:.80}")
        values[key] = value
    for key, (default, lowest) in PAIRS.items():
        value = entry.get(key, default)
        pair = value if isinstance(value, list) and len(value) == 2 else [value, value]
        if not all(_is_int(v) and v >= lowest for v in pair):
            kind = "a non-negative" if lowest == 0 else "a positive"
            raise InvalidInputError(f"{where}: field {key!r} must be {kind} integer or an [h, w] pair of them, "
                                    f"got {value!r:.80}")
        values[key] = (pair[0], pair[1])
    shape = SuiteShape(name=name, **values)
    check_geometry(shape, where=where)
    return shape


def parse_gemm_shape(entry: Any, *, where: str, default_name: str = "shape") -> GemmShape:
    """Validate one GEMM suite entry (a dict with m, n, k and an optional name)."""
    name, where = _named_entry(entry, GEMM_FIELDS, where=where, default_name=default_name)
    for key in ("m", "n", "k"):
        if key not in entry:
            raise InvalidInputError(f"{where}: missing required field {key!r} (required: m, n, k)")
        if not _is_int(entry[key]) or entry[key] < 1:
            raise InvalidInputError(f"{where}: field {key!r} must be a positive integer, got {entry[key]!r:.80}")
    return GemmShape(name=name, m=entry["m"], n=entry["n"], k=entry["k"])


def check_geometry(shape: SuiteShape, *, where: str) -> None:
    """Cross-field rules: groups divide both channel counts, the dilated filter fits the padded input."""
    if shape.c % shape.groups or shape.k % shape.groups:
        raise InvalidInputError(f"{where}: groups={shape.groups} must divide c={shape.c} and k={shape.k}")
    for axis, size, kernel, index in (("height", shape.h, shape.r, 0), ("width", shape.w, shape.s, 1)):
        span = shape.dilation[index] * (kernel - 1) + 1
        if size + 2 * shape.pad[index] < span:
            raise InvalidInputError(
                f"{where}: output {axis} is not positive: input {size} + 2 * pad {shape.pad[index]} is smaller than "
                f"the dilated filter ({span})"
            )


def load_suite(path: str | Path = CONV_SUITE, *, kind: str = "conv") -> list[Any]:
    """Read and validate a suite file: SuiteShapes (`kind` "conv") or GemmShapes ("gemm"); every problem is an
    InvalidInputError naming the file (and entry, field)."""
    parse = {"conv": parse_shape, "gemm": parse_gemm_shape}[kind]
    path = Path(path)
    if path.is_dir():
        raise InvalidInputError(f"suite file {path} is a directory")
    try:
        if path.stat().st_size > MAX_SUITE_BYTES:
            raise InvalidInputError(f"suite file {path} is larger than {MAX_SUITE_BYTES >> 20} MiB")
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(f"suite file {path} does not exist") from None
    except PermissionError:
        raise InvalidInputError(f"suite file {path} cannot be read (permission denied)") from None
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"suite file {path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidInputError(f"suite file {path} is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict) or "shapes" not in data:
        raise InvalidInputError(f"suite file {path} must be a JSON object with a \"shapes\" list (see tritonconv.suite)")
    unknown = [key for key in data if key not in TOP_LEVEL]
    if unknown:
        raise InvalidInputError(f"suite file {path}: unknown top-level field {unknown[0]!r:.80}; the fields are about, shapes")
    entries = data["shapes"]
    if not isinstance(entries, list) or not entries:
        raise InvalidInputError(f"suite file {path}: \"shapes\" must be a non-empty list of shape objects")
    shapes = [parse(entry, where=f"suite file {path}, shape #{i}", default_name=f"shape{i}")
              for i, entry in enumerate(entries)]
    seen: set[str] = set()
    for shape in shapes:
        if shape.name in seen:
            raise InvalidInputError(f"suite file {path}: two shapes are named {shape.name!r}; names must be unique")
        seen.add(shape.name)
    return shapes


def split_patterns(values: Optional[Iterable[str]]) -> list[str]:
    """Patterns from `--shapes a,b --shapes c` (comma-separated, repeatable); empty ones are rejected."""
    patterns = [part.strip() for value in values or () for part in value.split(",")]
    if any(not p for p in patterns):
        raise InvalidInputError("--shapes takes non-empty glob patterns separated by commas, e.g. 'r50_*,*dw*'")
    return patterns


def select(shapes: Sequence[Any], patterns: Optional[Sequence[str]], *, source: str) -> list[Any]:
    """The shapes whose name matches any glob pattern (all without patterns); a pattern matching nothing is an
    error listing the names."""
    if not patterns:
        return list(shapes)
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(s.name, pattern) for s in shapes):
            names = ", ".join(s.name for s in shapes[:12]) + (", ..." if len(shapes) > 12 else "")
            raise InvalidInputError(f"--shapes pattern {pattern!r} matches no shape in {source} (names: {names}); "
                                    f"patterns are globs on whole names, e.g. 'r50_*' or '*dw*'")
    return [s for s in shapes if any(fnmatch.fnmatchcase(s.name, p) for p in patterns)]


def load_problems(path: str | Path = CONV_SUITE, *, shapes: Optional[Sequence[str]] = None, dtype: str = "float16",
                  layout: str = "nhwc", precision: str = "") -> list[tuple[str, Any]]:
    """(name, ConvProblem) for each shape of the conv suite file whose name matches one of the glob patterns
    `shapes` (all without patterns), in `dtype` (any alias, or "int8"), `layout` and `precision`."""
    selected = select(load_suite(path), shapes, source=str(path))
    return [(s.name, s.problem(dtype=dtype, layout=layout, precision=precision)) for s in selected]


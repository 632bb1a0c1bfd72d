"""Compile kernels for a GPU target without a GPU, and read what the compiler made of them.

`triton.compile(ASTSource(...), target=GPUTarget("cuda", cc, 32))` runs the whole real pipeline (TTIR -> TTGIR
-> LLVM -> PTX -> cubin via ptxas) on the CPU. This catches code that the lenient interpreter accepts but the
compiler rejects, and gives resource usage (registers, spills, shared memory) and the instruction mix (HGMMA on
Hopper, HMMA on Ampere) to prune configs before they reach a GPU.

The kernels must be real `triton.JITFunction`s, i.e. imported without TRITON_INTERPRET=1. This package is the
library; its command line, `python -m tritonconv.compile` (or `tritonconv compile`), is tritonconv/commands/compile.py.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import torch

from ..kernels.base import Config, ConvTensors, KernelCall, KernelFamily, Quantization
from ..problem import ConvProblem
from ..runtime import COMPILE_TARGETS

_TRITON_TYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.int32: "i32", torch.int64: "i64"}


@dataclass(frozen=True)
class ResourceUsage:
    """What one compiled kernel uses per thread / per block, and which matrix instructions it contains."""

    registers: int
    stack_bytes: int  # > 0 means registers spilled to local memory
    shared_bytes: int
    hgmma: int  # Hopper warpgroup MMA instructions in SASS
    hmma: int  # Ampere-style MMA instructions in SASS
    wide_loads: int = 0  # 128-bit global loads (LDG.E.128, cp.async LDGSTS...128): vectorised along a contiguous axis
    narrow_loads: int = 0  # 8- and 16-bit global loads: one element per instruction

    @property
    def spills(self) -> bool:
        return self.stack_bytes > 0


def cuda_tool(name: str) -> str:
    import triton

    return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)


def _backend(capability: int):
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend

    return make_backend(GPUTarget("cuda", capability, 32))


_BINDERS: dict[tuple[int, int], Any] = {}


def _launch_kwargs(call: KernelCall) -> dict[str, Any]:
    """The keyword arguments `JITFunction.run` passes on to the specialisation (it adds debug and
    instrumentation_mode itself, from the function and Triton's knobs)."""
    from triton import knobs

    return {
        **call.args, **call.constexprs, "num_warps": call.num_warps, "num_stages": call.num_stages,
        "debug": call.fn.debug or knobs.runtime.debug, "instrumentation_mode": knobs.compilation.instrumentation_mode,
    }


def launch_specialization(call: KernelCall, capability: int):
    """(ASTSource, options) exactly as Triton's launcher builds them for `call` on a `capability` GPU: the same
    binder `JITFunction.run` uses (ints equal to 1 become constants; pointers and ints are marked divisible by
    16, or get an empty attribute list when they are not; bools are u1), so a precompiled binary lands under the
    cache key the launch looks up and each candidate is compiled once."""
    from triton.compiler import ASTSource
    from triton.runtime.jit import create_function_from_signature

    if not hasattr(call.fn, "arg_names"):
        raise RuntimeError("compiling for a target needs real Triton kernels: import tritonconv without TRITON_INTERPRET=1")
    backend = _backend(capability)
    binder_key = (id(call.fn), capability)
    if binder_key not in _BINDERS:
        _BINDERS[binder_key] = create_function_from_signature(call.fn.signature, call.fn.params, backend)
    kwargs = _launch_kwargs(call)
    bound, specialization, options = _BINDERS[binder_key](**kwargs)
    options, signature, constexprs, attrs = call.fn._pack_args(backend, kwargs, bound, specialization, options)
    return ASTSource(call.fn, signature, constexprs, attrs), options


def ast_source(call: KernelCall, capability: int = 90):
    """The ASTSource Triton's launcher would build for `call` (see `launch_specialization`)."""
    return launch_specialization(call, capability)[0]


def _cache_hash(src, options, capability: int) -> str:
    import hashlib

    from triton._C.libtriton import get_cache_invalidating_env_vars
    from triton.runtime.cache import get_cache_key

    backend = _backend(capability)
    options = backend.parse_options(dict(options.__dict__, **src.parse_options()))
    key = get_cache_key(src, backend, options, env_vars=get_cache_invalidating_env_vars())
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def cache_hash(call: KernelCall, capability: int) -> str:
    """The on-disk cache hash `compile_call(call, capability)` compiles under (CompiledKernel.hash)."""
    src, options = launch_specialization(call, capability)
    return _cache_hash(src, options, capability)


def compile_call(call: KernelCall, capability: int):
    """Compile one launch for compute capability `capability` (e.g. 80, 90); returns Triton's CompiledKernel,
    stored in Triton's cache under the key the launch on such a GPU looks up."""
    import triton
    from triton.backends.compiler import GPUTarget

    src, options = launch_specialization(call, capability)
    return triton.compile(src, target=GPUTarget("cuda", capability, 32), options=options.__dict__)


class _ProbeDriver:
    """A stand-in for Triton's CUDA driver: the launcher runs up to the compile and reports the target."""

    def __init__(self, capability: int):
        from triton.backends.compiler import GPUTarget

        self.target, self.device = GPUTarget("cuda", capability, 32), f"tritonconv-launch-probe-sm{capability}"

    def get_current_device(self):
        return self.device

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        return self.target


@contextlib.contextmanager
def launch_hashes(capability: int) -> Iterator[list[str]]:
    """Within the block, kernel launches (`fn[grid](...)`) do not run: Triton's own launcher specialises them for
    a `capability` GPU and stops before compiling; the list receives the cache hash each launch would compile
    under (the key check, without a GPU). Not thread-safe: swaps Triton's active driver."""
    import json as _json

    from triton import knobs
    from triton.compiler import ASTSource
    from triton.runtime.driver import driver

    probe, hashes, backend = _ProbeDriver(capability), [], _backend(capability)
    touched: list[Any] = []

    def hook(*, fn, compile, **_: Any) -> bool:
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in _json.loads(compile["specialization_data"])["options"].items()}
        src = ASTSource(fn.jit_function, compile["signature"], compile["constants"], compile["configs"][0])
        hashes.append(_cache_hash(src, backend.parse_options(options), capability))
        touched.append(fn.jit_function)
        return True  # skip the compile: the launch returns None

    previous_hook, previous_driver = knobs.runtime.jit_cache_hook, driver._active
    knobs.runtime.jit_cache_hook, driver._active = hook, probe
    try:
        yield hashes
    finally:
        knobs.runtime.jit_cache_hook, driver._active = previous_hook, previous_driver
        for fn in touched:
            fn.device_caches.pop(probe.device, None)


def resource_usage(compiled, *, sass: bool = True) -> ResourceUsage:
    """Registers, stack (spills), shared memory and, with `sass`, MMA and load instruction counts of a compiled
    kernel. Shared memory comes from Triton's metadata; registers and spills from Triton's `n_regs`/`n_spills`
    where the kernel was loaded on a GPU, else from one `cuobjdump --dump-resource-usage` of the cubin (Triton
    reads them only when it loads the binary). `sass=False` skips the disassembly (the tuner's feasibility check)."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        if getattr(compiled, "n_regs", None) is not None and getattr(compiled, "n_spills", None) is not None:
            registers, stack = int(compiled.n_regs), 4 * int(compiled.n_spills)  # Triton counts 4-byte words
        else:
            usage = subprocess.run([cuda_tool("cuobjdump"), "--dump-resource-usage", f.name], capture_output=True, text=True, check=True).stdout
            reg, spill = re.search(r"REG:(\d+)", usage), re.search(r"STACK:(\d+)", usage)
            registers, stack = int(reg.group(1)) if reg else 0, int(spill.group(1)) if spill else 0
        text = subprocess.run([cuda_tool("cuobjdump"), "--dump-sass", f.name], capture_output=True, text=True, check=True).stdout if sass else ""
    return ResourceUsage(
        registers=registers,
        stack_bytes=stack,
        shared_bytes=int(compiled.metadata.shared),
        hgmma=len(re.findall(r"\bHGMMA\b", text)),
        hmma=len(re.findall(r"\bHMMA\b", text)),
        wide_loads=len(re.findall(r"\bLDG(?:STS)?\.E[.\w]*\.128\b", text)),
        narrow_loads=len(re.findall(r"\bLDG(?:STS)?\.E[.\w]*\.(?:U8|S8|U16|S16)\b", text)),
    )


def meta_tensors(problem: ConvProblem, *, bias: bool = True, residual: bool = False, activation: str = "relu",
                 convert_nhwc: bool = False, scales: bool = False, requantize: bool = False) -> ConvTensors:
    """Shape-and-stride-only tensors for `problem` (device "meta"): enough to describe a launch, no data.
    `convert_nhwc`: an NCHW problem whose input the dispatcher converts to channels_last first (the output stays NCHW).
    A quantized (int8) problem has a float32 output (unit scales, as the search runs it), with `scales` per-channel
    scales (tritonconv.quantized's dequantised output), with `requantize` also an int8 output."""
    fmt = torch.channels_last if problem.layout == "nhwc" else torch.contiguous_format
    dt = problem.torch_dtype
    out_dt = torch.int8 if requantize else problem.output_dtype
    input_fmt = torch.channels_last if convert_nhwc else fmt
    x = torch.empty(problem.n, problem.c, problem.h, problem.w, dtype=dt, device="meta", memory_format=input_fmt)
    w = torch.empty(problem.k, problem.c_per_group, problem.r, problem.s, dtype=dt, device="meta")
    y_fmt = torch.channels_last if problem.output_layout == "nhwc" else torch.contiguous_format
    y = torch.empty(problem.output_shape, dtype=out_dt, device="meta", memory_format=y_fmt)
    b = torch.empty(problem.k, dtype=problem.output_dtype, device="meta") if bias else None
    res = torch.empty(problem.output_shape, dtype=problem.output_dtype, device="meta", memory_format=fmt) if residual else None
    quant = None
    if problem.is_quantized and (scales or requantize):
        quant = Quantization(torch.empty(problem.k, dtype=torch.float32, device="meta"), 0.5 if requantize else None)
    return ConvTensors(x, w, y, b, res, activation, quant)


def compile_config(
    family: KernelFamily, problem: ConvProblem, config: Config, capability: int, *, sass: bool = True, **tensor_options: Any
) -> list[ResourceUsage]:
    """Compile every launch of `family` for (problem, config) for `capability`; resource usage of each
    (`sass=False`: registers, spills and shared memory only, no disassembly)."""
    calls = family.kernel_calls(problem, meta_tensors(problem, **tensor_options), config, COMPILE_TARGETS.get(capability))
    return [resource_usage(compile_call(call, capability), sass=sass) for call in calls]


def _compile_record(job: tuple[str, ConvProblem, Config, int]) -> dict[str, Any]:
    from ..kernels import get_family

    family_name, problem, config, cc = job
    record: dict[str, Any] = {"problem": problem.key, "label": problem.long_label, "family": family_name, "sm": cc,
                              "config": config}
    try:
        usage = compile_config(get_family(family_name), problem, config, cc)
        record.update(ok=True, usage=[u.__dict__ for u in usage])
    except Exception as exc:  # noqa: BLE001 - every failure is reported, none stops the sweep
        record.update(ok=False, error=f"{type(exc).__name__}: {str(exc)[:2000]}")
    return record


def check_defaults(
    problems: Iterable[ConvProblem],
    capabilities: Iterable[int],
    families: Optional[set[str]] = None,
    jobs: int = 1,
    on_record: Optional[Callable[[dict[str, Any], int, int], None]] = None,
) -> list[dict[str, Any]]:
    """Compile, for every target, the default config of each family that would be offered there (the families
    decide for its `COMPILE_TARGETS` record: capability, SMs, shared memory); one record per distinct kernel (launches that would compile to
    the same binary are compiled once). `on_record(record, done, total)` follows the progress."""
    from concurrent.futures import ProcessPoolExecutor

    from ..kernels import families_for

    work, seen = [], set()
    for problem in problems:
        for cc in capabilities:
            target = COMPILE_TARGETS[cc]
            for family in families_for(problem, target):
                if families and family.name not in families:
                    continue
                config = family.default_config(problem, target)
                calls = family.kernel_calls(problem, meta_tensors(problem), config, target)
                identity = (cc, tuple(cache_hash(call, cc) for call in calls))
                if identity not in seen:
                    seen.add(identity)
                    work.append((family.name, problem, config, cc))
    def followed(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        done = []
        for record in records:
            done.append(record)
            if on_record is not None:
                on_record(record, len(done), len(work))
        return done

    if jobs <= 1:
        return followed(_compile_record(job) for job in work)
    # spawn: a forked child of a process that initialised CUDA cannot use it; the children are handed the
    # target's record and never query the GPU.
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return followed(pool.map(_compile_record, work))


def random_problems(count: int, seed: int = 0) -> list[ConvProblem]:
    """`count` random conv problems over what tritonconv claims to support: dense, grouped, depthwise and
    channel-multiplier convs, square and rectangular filters, stride, dilation, padding, both layouts, every
    dtype, odd channel counts and small and large images (for compile sweeps of the default configs)."""
    import random

    rng = random.Random(seed)
    dtypes = ("float16", "bfloat16", "float32")
    problems = []
    while len(problems) < count:
        kind = rng.choice(("dense", "dense", "grouped", "depthwise", "pointwise"))
        r, s = rng.choice(((3, 3), (3, 3), (1, 1), (5, 5), (7, 7), (1, 7), (7, 1), (2, 2), (11, 11)))
        if kind == "pointwise":
            r = s = 1
        c = rng.choice((3, 8, 16, 24, 32, 48, 64, 96, 120, 128, 192, 256, 384, 512, 1024, 2048))
        groups, k = 1, rng.choice((8, 16, 32, 64, 100, 128, 256, 512, 1000, 2048))
        if kind == "grouped":
            groups = rng.choice([g for g in (2, 4, 8, 16, 32, 64) if c % g == 0] or [1])
            k = groups * rng.choice((1, 2, 4, 8, 16, 24, 56))
        elif kind == "depthwise":
            groups, k = c, c * rng.choice((1, 1, 1, 2))
        stride = rng.choice((1, 1, 1, 2))
        dilation = rng.choice((1, 1, 1, 2, 4)) if max(r, s) > 1 else 1
        h = rng.choice((1, 7, 13, 14, 28, 56, 64, 112, 224))
        w = h if rng.random() < 0.8 else rng.choice((7, 17, 33, 320))
        if (h - dilation * (r - 1) - 1) // stride + 1 <= 0 and rng.random() < 0.5:
            continue
        pad_h, pad_w = dilation * (r - 1) // 2, dilation * (s - 1) // 2
        problem = ConvProblem(
            n=rng.choice((1, 2, 8, 32)), c=c, h=h, w=w, k=k, r=r, s=s, stride_h=stride, stride_w=stride,
            pad_h=pad_h, pad_w=pad_w, dilation_h=dilation, dilation_w=dilation, groups=groups,
            dtype=rng.choice(dtypes), layout=rng.choice(("nhwc", "nhwc", "nchw")),
        )
        if problem.p > 0 and problem.q > 0:
            problems.append(problem)
    return problems


def write_compile_results(path: Path, records: list[dict[str, Any]], **meta: Any) -> Path:
    """The compile records as a results file (kind "compile", one flat row per kernel) for `tritonconv report`."""
    from ..results import write_results

    rows = []
    for r in records:
        usage = r.get("usage") or [{}]
        worst = max(usage, key=lambda u: u.get("registers", 0))
        rows.append({"name": f"sm{r['sm']} {r['family']} {r['label']}", "ok": r["ok"], "registers": worst.get("registers"),
                     "stack_bytes": worst.get("stack_bytes"), "shared_bytes": worst.get("shared_bytes"),
                     "error": r.get("error"), "problem": r["problem"], "family": r["family"], "sm": r["sm"],
                     "config": r.get("config"), "usage": r.get("usage")})
    return write_results(path, rows, meta, kind="compile")

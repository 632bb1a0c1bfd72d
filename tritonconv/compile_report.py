"""Static report of compiled kernels, side by side with a reference GEMM: `python -m tritonconv.compile --report`.

For each problem and target (sm_80, sm_90) the kernels of a chosen config (the dispatcher's default, every
supporting family's default, or a family's whole feasible space) are compiled without a GPU and read back:
registers and spills (ptxas -v, rerun on Triton's PTX because Triton discards its log), shared memory, CTAs
per SM and waves, the MMA kind and count of the main loop, whether ptxas serialised the warpgroup MMAs
(C7515) and how deep they are pipelined, asynchronous (cp.async, TMA) vs synchronous loads and their widths,
and the main loop's instruction count and integer share. Every kernel with a (BLOCK_M, BLOCK_N, BLOCK_K) tile
is compared with Triton's tutorial-03 matmul of the same tile, dtype, warps, stages and target, compiled in
the same run. `bar_violations` states the bar the defaults are held to (tests/test_compile_report.py).
"""
from __future__ import annotations

import dataclasses
import math
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import torch
import triton
import triton.language as tl

from .compile import compile_call, cuda_tool, meta_tensors
from .kernels.base import Config, KernelCall
from .problem import ConvProblem
from .results import write_results
from .runtime import COMPILE_TARGETS, DeviceInfo
from .sass import PtxasLog, SassSummary, parse_ptxas_log, parse_sass, summarize

CHOICES = ("dispatch", "families", "space")
# Per-SM limits of the emulated targets: (shared memory per SM, registers, threads, CTAs); 1 KiB of shared
# memory per CTA is reserved by the driver on sm_80+.
SM_LIMITS = {80: (167936, 65536, 2048, 32), 90: (233472, 65536, 2048, 32)}
RESERVED_SHARED_PER_CTA = 1024
LOOP_RATIO_LIMIT = 1.3


@dataclass(frozen=True)
class KernelReport:
    problem: str
    family: str
    config: dict[str, Any]
    sm: int
    kernel: str
    registers: int
    spill_bytes: int  # ptxas spill stores + loads (0 = no spills)
    shared_bytes: int
    threads: int
    grid_ctas: int
    ctas_per_sm: int
    waves: float
    serialised_wgmma: bool
    sass: SassSummary
    ptxas_warnings: tuple[str, ...] = ()
    reference: Optional[SassSummary] = None  # tutorial matmul of the same tile
    tile: Optional[tuple[int, int, int]] = None  # (BLOCK_M, BLOCK_N, BLOCK_K) of a GEMM-shaped launch
    launch: int = 0  # index among the config's launches; > 0: an auxiliary one (e.g. the split-K reduction)

    @property
    def loop_ratio(self) -> Optional[float]:
        if self.reference is None or not self.reference.loop_instructions or not self.sass.has_main_loop:
            return None
        return self.sass.loop_instructions / self.reference.loop_instructions

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["loop_ratio"] = self.loop_ratio
        return data


def ctas_per_sm(sm: int, registers: int, threads: int, shared_bytes: int) -> int:
    """Resident CTAs per SM by registers (allocated per warp in 256-register units), shared memory, threads."""
    smem, regs, max_threads, max_ctas = SM_LIMITS[sm]
    warps = math.ceil(threads / 32)
    regs_per_warp = math.ceil(max(registers, 1) * 32 / 256) * 256
    by_regs = (regs // regs_per_warp) // warps
    by_smem = smem // (shared_bytes + RESERVED_SHARED_PER_CTA)
    return max(0, min(by_regs, by_smem, max_threads // threads, max_ctas))


def _run_tool(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([cuda_tool(name), *args], capture_output=True, text=True, check=False)


def read_compiled(compiled, sm: int) -> tuple[str, SassSummary, PtxasLog]:
    """Kernel name, SASS summary and ptxas -v log of one of Triton's compiled kernels."""
    arch = f"sm_{sm}a" if sm >= 90 else f"sm_{sm}"
    with tempfile.TemporaryDirectory() as tmp:
        cubin, ptx = Path(tmp) / "k.cubin", Path(tmp) / "k.ptx"
        cubin.write_bytes(compiled.asm["cubin"])
        ptx.write_text(compiled.asm["ptx"])
        sass_text = _run_tool("cuobjdump", "--dump-sass", str(cubin)).stdout
        log = _run_tool("ptxas", "-lineinfo", "-v", f"--gpu-name={arch}", str(ptx), "-o", str(Path(tmp) / "v.cubin"))
    functions = parse_sass(sass_text)
    name, instructions = max(functions.items(), key=lambda item: len(item[1]))
    return name, summarize(instructions), parse_ptxas_log(log.stderr + log.stdout)


# ---- reference GEMM: Triton's tutorial 03 matmul, verbatim apart from the constexpr names ----------------
@triton.jit
def reference_matmul_kernel(
    a_ptr, b_ptr, c_ptr, M, N, K, stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    pid = tl.program_id(axis=0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m
    offs_am = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)) % M
    offs_bn = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % N
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + (offs_am[:, None] * stride_am + offs_k[None, :] * stride_ak)
    b_ptrs = b_ptr + (offs_k[:, None] * stride_bk + offs_bn[None, :] * stride_bn)
    accumulator = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, tl.cdiv(K, BLOCK_K)):
        a = tl.load(a_ptrs, mask=offs_k[None, :] < K - k * BLOCK_K, other=0.0)
        b = tl.load(b_ptrs, mask=offs_k[:, None] < K - k * BLOCK_K, other=0.0)
        accumulator = tl.dot(a, b, accumulator)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk
    c = accumulator.to(c_ptr.dtype.element_ty)
    offs_cm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_cn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    c_ptrs = c_ptr + stride_cm * offs_cm[:, None] + stride_cn * offs_cn[None, :]
    tl.store(c_ptrs, c, mask=(offs_cm[:, None] < M) & (offs_cn[None, :] < N))


def reference_call(block_m: int, block_n: int, block_k: int, dtype: torch.dtype, num_warps: int, num_stages: int) -> KernelCall:
    """A 4096^3 tutorial matmul launch of the given tile (row-major A, B, C) as a KernelCall."""
    size = 4096
    a = torch.empty(size, size, dtype=dtype, device="meta")
    args = dict(
        a_ptr=a, b_ptr=a, c_ptr=a, M=size, N=size, K=size,
        stride_am=size, stride_ak=1, stride_bk=size, stride_bn=1, stride_cm=size, stride_cn=1,
    )
    constexprs = dict(BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, GROUP_M=8)
    grid = (triton.cdiv(size, block_m) * triton.cdiv(size, block_n),)
    return KernelCall(reference_matmul_kernel, grid, args, constexprs, num_warps, num_stages)


def _tile(call: KernelCall) -> Optional[tuple[int, int, int]]:
    c = call.constexprs
    if all(name in c for name in ("BLOCK_M", "BLOCK_N", "BLOCK_K")):
        return c["BLOCK_M"], c["BLOCK_N"], c["BLOCK_K"]
    return None


_reference_memo: dict[tuple, SassSummary] = {}


def reference_summary(tile: tuple[int, int, int], dtype: torch.dtype, num_warps: int, num_stages: int, sm: int) -> SassSummary:
    key = (tile, dtype, num_warps, num_stages, sm)
    if key not in _reference_memo:
        call = reference_call(*tile, dtype, num_warps, num_stages)
        _reference_memo[key] = read_compiled(compile_call(call, sm), sm)[1]
    return _reference_memo[key]


def report_kernel(
    problem: ConvProblem, family_name: str, config: Config, call: KernelCall, sm: int, launch: int = 0
) -> KernelReport:
    compiled = compile_call(call, sm)
    name, summary, log = read_compiled(compiled, sm)
    threads = call.num_warps * 32
    shared = int(compiled.metadata.shared)
    registers = log.registers
    per_sm = ctas_per_sm(sm, registers, threads, shared)
    grid_ctas = math.prod(call.grid)
    sms = COMPILE_TARGETS[sm].sm_count
    tile = _tile(call)
    reference = None
    if tile is not None:
        reference = reference_summary(tile, problem.operand_dtype, call.num_warps, call.num_stages, sm)
    return KernelReport(
        problem=problem.key, family=family_name, config=dict(config), sm=sm, kernel=name,
        registers=registers, spill_bytes=log.spill_stores + log.spill_loads, shared_bytes=shared, threads=threads,
        grid_ctas=grid_ctas, ctas_per_sm=per_sm, waves=round(grid_ctas / (per_sm * sms), 2) if per_sm else math.inf,
        serialised_wgmma=log.serialised_wgmma, sass=summary, ptxas_warnings=log.warnings, reference=reference,
        tile=tile, launch=launch,
    )


def configs_to_report(
    problem: ConvProblem, choice: str, families: Optional[set[str]] = None, limit: int = 0, device: Optional[DeviceInfo] = None,
) -> list[tuple[str, Config]]:
    """(family, config) pairs for `problem` on `device` (a compile target): the dispatcher's default pick,
    every supporting family's default, or every feasible config of each family (at most `limit` each)."""
    from .dispatch import default_family
    from .kernels import families_for

    if choice == "dispatch":
        family = default_family(problem, device)
        picked = [(family, family.default_config(problem, device))]
    elif choice == "families":
        picked = [(f, f.default_config(problem, device)) for f in families_for(problem, device)]
    elif choice == "space":
        picked = []
        for f in families_for(problem, device):
            configs = list(f.space(problem, device).enumerate(problem))
            picked += [(f, c) for c in (configs[:limit] if limit else configs)]
    else:
        raise ValueError(f"choice must be one of {CHOICES}, not {choice!r}")
    return [(f.name, c) for f, c in picked if not families or f.name in families]


@dataclass
class ReportJob:
    problem: ConvProblem
    sm: int
    choice: str = "dispatch"
    families: Optional[set[str]] = None
    limit: int = 0
    label: str = ""  # e.g. the suite layer's name


@dataclass
class ReportRow:
    label: str
    problem: ConvProblem
    kernel: Optional[KernelReport] = None
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    sm: Optional[int] = None  # the target (a row that failed to compile has no kernel to read it from)

    def record(self) -> dict[str, Any]:
        """This row as a record of a results file (kind "compile"): the columns of RECORD_COLUMNS for the table of
        `tritonconv report`, and every field of the kernel's report (sass, reference, config, ...) beside them."""
        k, violations = self.kernel, bar_violations(self)
        sm = k.sm if k is not None else self.sm
        record: dict[str, Any] = {
            "name": " ".join(str(part) for part in (f"sm{sm}", k.family if k else "", self.label) if part)
                    + (f" launch {k.launch}" if k is not None and k.launch else ""),
            "label": self.label, "sm": sm, "ok": k is not None,
        }
        if k is not None:
            s = k.sass
            record.update(k.to_dict())
            record.update(
                tile="x".join(map(str, k.tile)) if k.tile else None,
                mma=f"{s.mma_kind or '-'}x{s.loop_mma}" + (" SER" if k.serialised_wgmma else ""),
                loop_instructions=s.loop_instructions if s.has_main_loop else None,
                reference_loop_instructions=k.reference.loop_instructions if k.reference else None,
            )
        record.update(problem=self.problem.key, bar="ok" if not violations else "; ".join(v.split(":")[0] for v in violations),
                      bar_violations=violations)
        if self.error:
            record["error"] = self.error
        return record


# The scalar fields `tritonconv report` shows for a compile report, in this order (the file holds every field).
RECORD_COLUMNS = ("family", "tile", "registers", "spill_bytes", "shared_bytes", "ctas_per_sm", "waves", "mma",
                  "loop_instructions", "reference_loop_instructions", "loop_ratio", "bar", "error")


def run_job(job: ReportJob) -> list[ReportRow]:
    from .kernels import get_family

    rows = []
    target = COMPILE_TARGETS[job.sm]
    for family_name, config in configs_to_report(job.problem, job.choice, job.families, job.limit, target):
        try:
            calls = get_family(family_name).kernel_calls(job.problem, meta_tensors(job.problem), config, target)
            for launch, call in enumerate(calls):
                report = report_kernel(job.problem, family_name, config, call, job.sm, launch)
                rows.append(ReportRow(job.label, job.problem, report, sm=job.sm))
        except Exception as exc:  # noqa: BLE001 - a failing compile is a row of the report, not a crash
            rows.append(ReportRow(job.label, job.problem, error=f"{family_name}: {type(exc).__name__}: {str(exc)[:500]}",
                                  sm=job.sm))
    return rows


def build_report(jobs: Iterable[ReportJob], processes: int = 1) -> list[ReportRow]:
    jobs = list(jobs)
    if processes <= 1:
        return [row for job in jobs for row in run_job(job)]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, as in compile.check_defaults: safe on a machine whose CUDA the parent may have initialised
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        return [row for rows in pool.map(run_job, jobs) for row in rows]


# ---- the bar ------------------------------------------------------------------------------------------------
def can_use_tensor_cores(problem: ConvProblem) -> bool:
    """Depthwise convs have no reduction to feed an MMA; IEEE float32 has no tensor-core path."""
    return not problem.is_depthwise and problem.precision != "ieee"


def allowed_load_bits(problem: ConvProblem, config: Optional[Config] = None, threads: int = 0) -> int:
    """The widest global load the input's contiguous channel run allows: an NHWC run of c_per_group elements
    (one group's channels, the reduction axis of a tile) aligned to 16 B loads 128 bits at a time. A filter-
    outer step reads one tap's channels; C < 8 channel-outer stems gather unaligned (s, c) runs (16 bits).
    With a tile `config` and `threads`, also no wider than the smaller operand tile's elements per thread."""
    if problem.layout != "nhwc":
        return problem.element_bytes * 8
    run_bytes = problem.c_per_group * problem.element_bytes
    bits = 8 * math.gcd(run_bytes, 16)
    if config and threads and all(n in config for n in ("BLOCK_M", "BLOCK_N", "BLOCK_K")):  # a GEMM tile
        per_thread = min(config["BLOCK_M"], config["BLOCK_N"]) * config["BLOCK_K"] // threads
        bits = min(bits, max(8 * problem.element_bytes, 8 * problem.element_bytes * per_thread))
    return bits


def bar_violations(row: ReportRow) -> list[str]:
    """Which parts of the bar a compiled default misses (rule name: detail); empty when it passes."""
    if row.kernel is None:
        return [f"compile: {row.error}"]
    k, s, problem = row.kernel, row.kernel.sass, row.problem
    found = []
    if k.spill_bytes:
        found.append(f"spills: {k.spill_bytes} B")
    if k.launch > 0:  # auxiliary launches (split-K reduction) are only held to no spills
        return found
    if can_use_tensor_cores(problem) and k.tile is not None:  # not e.g. a split-K reduction launch
        wanted = "HGMMA" if k.sm >= 90 else "HMMA"
        if s.mma_kind != wanted or not s.has_main_loop:
            found.append(f"mma: {s.mma_kind or 'none'} in the main loop, want {wanted}")
        if k.serialised_wgmma:
            found.append("serialised_wgmma: ptxas C7515")
        if s.mma_kind == "HGMMA" and (s.wgmma_wait_depth or 0) < 1:
            found.append(f"wgmma_wait: wait depth {s.wgmma_wait_depth}, MMAs not overlapped")
        if s.loop_sync_loads or not s.loop_async_loads:
            found.append(f"sync_loads: {s.loop_sync_loads} synchronous, {s.loop_async_loads} async loads in the loop")
    tile = dict(zip(("BLOCK_M", "BLOCK_N", "BLOCK_K"), k.tile)) if k.tile else None
    narrowest, allowed = s.narrowest_load, allowed_load_bits(problem, tile, k.threads)
    if narrowest is not None and narrowest < allowed:
        found.append(f"load_width: {narrowest}-bit loads, the channel alignment allows {allowed}")
    ratio = k.loop_ratio
    if ratio is not None and ratio > LOOP_RATIO_LIMIT:
        found.append(f"loop_ratio: {ratio:.2f}x the reference GEMM's main loop")
    return found


# ---- output -------------------------------------------------------------------------------------------------
def _bits(histogram: dict) -> str:
    return " ".join(f"{bits}:{count}" for bits, count in sorted(histogram.items(), key=lambda kv: -int(kv[0]))) or "-"


def render(rows: list[ReportRow], console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=260, soft_wrap=True)
    table = Table(title="compiled kernels vs tutorial matmul of the same tile (main loop = loop-closing branch)")
    for column in ("layer", "sm", "family", "tile", "regs", "spill", "smem", "cta/sm", "waves", "mma",
                   "wait", "async/sync ld", "load bits", "loop (int)", "ref (int)", "ratio", "bar"):
        table.add_column(column, overflow="fold")
    for row in rows:
        k = row.kernel
        if k is None:
            table.add_row(row.label or row.problem.key, "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", row.error)
            continue
        s, ref = k.sass, k.reference
        c = k.config
        tile = "x".join(str(c[n]) for n in ("BLOCK_M", "BLOCK_N", "BLOCK_K") if n in c) or "-"
        mma = f"{s.mma_kind or '-'}x{s.loop_mma}" + (" SER" if k.serialised_wgmma else "")
        violations = bar_violations(row)
        table.add_row(
            row.label or row.problem.key, str(k.sm), k.family, tile, str(k.registers), str(k.spill_bytes),
            str(k.shared_bytes), str(k.ctas_per_sm), str(k.waves), mma,
            "-" if s.wgmma_wait_depth is None else str(s.wgmma_wait_depth),
            f"{s.loop_async_loads}/{s.loop_sync_loads}", _bits(s.load_bits),
            f"{s.loop_instructions} ({s.loop_integer})" if s.has_main_loop else "no loop",
            f"{ref.loop_instructions} ({ref.loop_integer})" if ref else "-",
            f"{k.loop_ratio:.2f}" if k.loop_ratio is not None else "-",
            "ok" if not violations else "; ".join(v.split(":")[0] for v in violations),
        )
    console.print(table)


def write_json(rows: list[ReportRow], path: str | Path, **meta: Any) -> Path:
    """The rows as a results file (`tritonconv.results`, kind "compile", one flat record per kernel) that
    `tritonconv report` reads."""
    return write_results(path, [row.record() for row in rows], {"report": "sass", "columns": list(RECORD_COLUMNS), **meta},
                         kind="compile")


def report_main(
    problems: list[ConvProblem], targets: list[int], choice: str, families: Optional[set[str]], limit: int,
    labels: dict[ConvProblem, str], processes: int, json_path: Optional[str],
) -> int:
    """The `--report` command: table on the terminal, JSON with every field; exit 1 if a kernel failed to compile."""
    jobs = [ReportJob(p, sm, choice, families, limit, labels.get(p, p.key)) for p in problems for sm in targets]
    rows = build_report(jobs, processes)
    render(rows)
    if json_path:
        write_json(rows, json_path, targets=targets, choice=choice)
    failing = [row for row in rows if bar_violations(row)]
    print(f"{len(rows)} kernels, {len(failing)} miss the bar, {sum(r.kernel is None for r in rows)} failed to compile")
    return 1 if any(r.kernel is None for r in rows) else 0

"""Reading NVIDIA SASS (the `cuobjdump --dump-sass` text of a cubin) and ptxas' `-v` log: instructions, the
main loop, and what it does per iteration. Pure text processing, so it is tested on committed snippets.

The main loop is found structurally: every backward branch (`BRA` to a lower address) closes a loop over
[target, branch]; out-of-line retry stubs placed after the function's `EXIT` also branch backwards, so a span
that contains an `EXIT` is not a loop. The main loop is the innermost loop that contains the kernel's matrix
instructions (HGMMA, else QGMMA, else IGMMA, else HMMA, else IMMA, else FFMA; Q: fp8, I: integer (int8) MMA). Its counts cover the hot path: blocks that a predicated
forward branch skips and that hold no MMA (the once-per-tile epilogue of a persistent kernel's flattened
tile x K loop) are left out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

# In order of preference: the first kind present in a kernel is its MMA kind.
MMA_KINDS = ("HGMMA", "QGMMA", "IGMMA", "HMMA", "IMMA", "FFMA")  # QGMMA / IGMMA: Hopper's fp8 / integer warpgroup MMA
# Integer ALU opcodes of the vector pipe: the per-thread address and index arithmetic of a loop. Their
# uniform-datapath forms (UIADD3, ULEA, ...) run once per warp beside it and are counted apart.
INTEGER_OPCODES = frozenset({
    "IMAD", "IADD3", "IADD", "VIADD", "IMUL", "ISETP", "IMNMX", "VIMNMX", "IABS", "LEA", "LOP3", "LOP", "SHF",
    "SHL", "SHR", "SEL", "PRMT", "FLO", "POPC", "BMSK", "SGXT", "BREV", "IDP", "I2I", "LEPC",
})
GLOBAL_LOADS = ("LDG", "LDGSTS", "UTMALDG", "UBLKCP")
ASYNC_LOADS = ("LDGSTS", "UTMALDG", "UBLKCP")  # cp.async and TMA: the copy runs while the SM computes
GLOBAL_STORES = ("STG", "UTMASTG", "RED", "ATOMG")
SERIALISED_WGMMA = "C7515"

_LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")
_FUNCTION = re.compile(r"Function\s*:\s*(\S+)")
_TARGET = re.compile(r"0x([0-9a-f]+)")


@dataclass(frozen=True)
class Instruction:
    address: int
    opcode: str  # with modifiers, e.g. "LDG.E.128"
    operands: str = ""
    predicate: str = ""  # "", "@P0", "@!UP1", ...

    @property
    def base(self) -> str:
        return self.opcode.split(".", 1)[0]

    @property
    def modifiers(self) -> tuple[str, ...]:
        return tuple(self.opcode.split(".")[1:])

    @property
    def is_integer(self) -> bool:
        return self.base in INTEGER_OPCODES

    @property
    def is_uniform(self) -> bool:
        return self.base.startswith("U") and self.base[1:] in INTEGER_OPCODES | {"MOV"}

    @property
    def access_bits(self) -> int:
        """Width of one memory access: .128/.64, .U16/.S16 (16), .U8/.S8 (8), else 32 bits."""
        mods = self.modifiers
        for token, bits in (("128", 128), ("64", 64), ("U16", 16), ("S16", 16), ("U8", 8), ("S8", 8)):
            if token in mods:
                return bits
        return 32

    def branch_target(self) -> Optional[int]:
        if self.base != "BRA":
            return None
        match = _TARGET.search(self.operands)
        return int(match.group(1), 16) if match else None


def parse_sass(text: str) -> dict[str, list[Instruction]]:
    """Instructions of every function in a `cuobjdump --dump-sass` listing, by function name."""
    functions: dict[str, list[Instruction]] = {}
    current: Optional[list[Instruction]] = None
    for line in text.splitlines():
        function = _FUNCTION.search(line)
        if function:
            current = functions.setdefault(function.group(1), [])
            continue
        match = _LINE.search(line)
        if match and current is not None:
            address, predicate, opcode, operands = match.groups()
            current.append(Instruction(int(address, 16), opcode, operands.strip(), (predicate or "").strip()))
    return functions


@dataclass(frozen=True)
class Loop:
    start: int  # address of the first instruction (the branch target)
    end: int  # address of the loop-closing branch
    body: tuple[Instruction, ...]


def loops(instructions: list[Instruction]) -> list[Loop]:
    """Every loop closed by a backward branch, excluding spans that contain an EXIT (out-of-line stubs)."""
    found = []
    for branch in instructions:
        target = branch.branch_target()
        if target is None or target > branch.address:
            continue
        body = tuple(i for i in instructions if target <= i.address <= branch.address)
        if len(body) > 1 and not any(i.base == "EXIT" for i in body):
            found.append(Loop(target, branch.address, body))
    return found


def mma_kind(instructions: tuple[Instruction, ...] | list[Instruction]) -> Optional[str]:
    bases = {i.base for i in instructions}
    return next((kind for kind in MMA_KINDS if kind in bases), None)


def main_loop(instructions: list[Instruction]) -> Optional[Loop]:
    """The innermost loop holding the kernel's matrix instructions (see the module docstring); None if none."""
    kind = mma_kind(instructions)
    if kind is None:
        return None
    candidates = [loop for loop in loops(instructions) if any(i.base == kind for i in loop.body)]
    return min(candidates, key=lambda loop: len(loop.body), default=None)


@dataclass(frozen=True)
class SassSummary:
    """What one kernel's SASS does, mostly per main-loop iteration (loads, MMA, instruction mix)."""

    mma_kind: Optional[str]  # HGMMA / HMMA / IMMA / FFMA in the main loop (whole kernel when there is no loop)
    has_main_loop: bool
    loop_instructions: int  # static instructions in the main loop body (NOPs excluded)
    loop_integer: int  # of which vector-pipe integer ALU
    loop_uniform: int  # and uniform-datapath integer ops (once per warp)
    loop_mma: int  # matrix instructions of mma_kind in the main loop
    wgmma_wait_depth: Optional[int]  # smallest `WARPGROUP.DEPBAR.LE gsb0, N` in the loop (0: no MMA overlap)
    loop_async_loads: int  # cp.async (LDGSTS) and TMA (UTMALDG) in the loop
    loop_sync_loads: int  # LDG in the loop: the thread waits for the data before using it
    loop_tma_loads: int
    load_bits: dict[int, int]  # global loads (LDG/LDGSTS) of the loop by access width -> count
    store_bits: dict[int, int]  # global stores of the whole kernel by width -> count

    @property
    def integer_share(self) -> float:
        return self.loop_integer / self.loop_instructions if self.loop_instructions else 0.0

    @property
    def narrowest_load(self) -> Optional[int]:
        return min(self.load_bits) if self.load_bits else None


def _width_histogram(instructions, bases: tuple[str, ...]) -> dict[int, int]:
    histogram: dict[int, int] = {}
    for i in instructions:
        if i.base in bases:
            histogram[i.access_bits] = histogram.get(i.access_bits, 0) + 1
    return dict(sorted(histogram.items(), reverse=True))


def hot_path(loop: Loop) -> list[Instruction]:
    """The loop body without the blocks a predicated forward branch skips when they hold no MMA: e.g. the
    once-per-tile epilogue inside a persistent kernel's flattened tile x K loop."""
    kind = mma_kind(loop.body)
    cold: set[int] = set()
    for branch in loop.body:
        target = branch.branch_target()
        if target is None or not branch.predicate or not branch.address < target <= loop.end:
            continue
        skipped = [i for i in loop.body if branch.address < i.address < target]
        if not any(i.base == kind for i in skipped):
            cold.update(i.address for i in skipped)
    return [i for i in loop.body if i.address not in cold]


def summarize(instructions: list[Instruction]) -> SassSummary:
    loop = main_loop(instructions)
    body = hot_path(loop) if loop else instructions
    body = [i for i in body if i.base != "NOP"]
    kind = mma_kind(body)
    waits = [
        int(m.group(1), 16) for i in body if i.opcode == "WARPGROUP.DEPBAR.LE"
        for m in [re.search(r"gsb0\s*,\s*0x([0-9a-f]+)", i.operands)] if m
    ]
    return SassSummary(
        mma_kind=kind,
        has_main_loop=loop is not None,
        loop_instructions=len(body),
        loop_integer=sum(i.is_integer for i in body),
        loop_uniform=sum(i.is_uniform for i in body),
        loop_mma=sum(i.base == kind for i in body) if kind else 0,
        wgmma_wait_depth=min(waits) if waits else None,
        loop_async_loads=sum(i.base in ASYNC_LOADS for i in body),
        loop_sync_loads=sum(i.base == "LDG" for i in body),
        loop_tma_loads=sum(i.base == "UTMALDG" for i in body),
        load_bits=_width_histogram(body, ("LDG", "LDGSTS")),
        store_bits=_width_histogram(instructions, ("STG",)),
    )


@dataclass(frozen=True)
class PtxasLog:
    """ptxas -v's verdict on one kernel."""

    registers: int
    spill_stores: int
    spill_loads: int
    stack_bytes: int
    serialised_wgmma: bool  # C7515: ptxas serialised the warpgroup MMAs (no MMA pipelining)
    warnings: tuple[str, ...]  # performance notes and warnings, one line each


def parse_ptxas_log(text: str) -> PtxasLog:
    def number(pattern: str) -> int:
        match = re.search(pattern, text)
        return int(match.group(1)) if match else 0

    notes = tuple(
        line.strip() for line in text.splitlines()
        if "warning" in line.lower() or re.search(r"\(C\d{4}\)", line)
    )
    return PtxasLog(
        registers=number(r"Used (\d+) registers"),
        spill_stores=number(r"(\d+) bytes spill stores"),
        spill_loads=number(r"(\d+) bytes spill loads"),
        stack_bytes=number(r"(\d+) bytes stack frame"),
        serialised_wgmma=SERIALISED_WGMMA in text,
        warnings=notes,
    )

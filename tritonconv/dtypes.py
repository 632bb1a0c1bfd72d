"""The one home of dtype names: what every command and API accepts for a dtype (torch-free).

Canonical names are torch's (float16, bfloat16, float32); fp16, bf16 and fp32 are aliases.
"""
from __future__ import annotations

DTYPE_ALIASES: dict[str, str] = {
    "float16": "float16", "fp16": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float32": "float32", "fp32": "float32",
}
DTYPE_CHOICES: tuple[str, ...] = tuple(DTYPE_ALIASES)


def canonical_dtype(name: str) -> str:
    """"fp16" -> "float16", ...; an unknown name raises InvalidInputError listing the accepted ones."""
    from .errors import InvalidInputError

    if isinstance(name, str) and name in DTYPE_ALIASES:
        return DTYPE_ALIASES[name]
    raise InvalidInputError(f"unknown dtype {name!r}; choose from {', '.join(DTYPE_CHOICES)}")

"""The Optuna search space of one problem, built from the kernel families' own ConfigSpaces (never a copy).

A candidate is a dispatch config: {"family": name, <that family's params>, ["convert_nhwc"], ["precision"]}.
In Optuna the family is a categorical dimension and each family's params live in its own namespace
("implicit_gemm.BLOCK_M"), so TPE's group decomposition models each family's subspace separately.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterator, Optional

import optuna

from ..errors import UnsupportedError
from ..kernels import families_for
from ..kernels.base import ConfigSpace, KernelFamily
from ..problem import ConvProblem
from ..runtime import DeviceInfo

Candidate = dict[str, Any]
FAMILY, PRECISION, CONVERT = "family", "precision", "convert_nhwc"


class SearchSpace:
    """Families supporting `problem` x their parameters x the allowed precisions x the NCHW handling options."""

    def __init__(self, problem: ConvProblem, *, precisions: tuple[str, ...], convert_options: tuple[bool, ...] = (False,),
                 device: Optional[DeviceInfo] = None):
        """`device`: the GPU the candidates are for (None: this process's device)."""
        self.problem = problem
        self.device = device
        self.families: dict[str, KernelFamily] = {f.name: f for f in families_for(problem, device)}
        if not self.families:
            raise UnsupportedError(f"no kernel family supports {problem.key}")
        self.precisions = precisions
        self.convert_options = convert_options if problem.layout == "nchw" else (False,)

    # ---- per-precision views -----------------------------------------------------------------------------
    def problem_for(self, candidate: Candidate) -> ConvProblem:
        """The problem as the candidate runs it (its precision)."""
        return self.problem.with_(precision=candidate.get(PRECISION, self.precisions[0]))

    def family_space(self, family: str, problem: Optional[ConvProblem] = None) -> ConfigSpace:
        return _space(self.families[family], problem or self.problem, self.device)

    def kernel_config(self, candidate: Candidate) -> dict[str, Any]:
        return {k: v for k, v in candidate.items() if k not in (FAMILY, PRECISION, CONVERT)}

    def violation(self, candidate: Candidate, *, pruning: bool = True) -> Optional[str]:
        """Why the candidate cannot run (hard constraints) or cannot win (pruning rules); None if feasible."""
        problem = self.problem_for(candidate)
        return self.family_space(candidate[FAMILY], problem).violation(problem, self.kernel_config(candidate), pruning=pruning)

    # ---- Optuna ------------------------------------------------------------------------------------------
    def suggest(self, trial: optuna.Trial) -> Candidate:
        """Define-by-run sampling: family first, then only that family's parameters."""
        family = trial.suggest_categorical(FAMILY, sorted(self.families))
        candidate: Candidate = {FAMILY: family}
        for param in self.family_space(family).params:
            candidate[param.name] = trial.suggest_categorical(f"{family}.{param.name}", param.choices)
        if len(self.convert_options) > 1:
            candidate[CONVERT] = trial.suggest_categorical(CONVERT, self.convert_options)
        if len(self.precisions) > 1:
            candidate[PRECISION] = trial.suggest_categorical(PRECISION, self.precisions)
        return candidate

    def params(self, candidate: Candidate) -> dict[str, Any]:
        """The Optuna params of `candidate` (inverse of `suggest`), for enqueue_trial."""
        family = candidate[FAMILY]
        params = {FAMILY: family}
        params.update({f"{family}.{k}": v for k, v in self.kernel_config(candidate).items()})
        if len(self.convert_options) > 1:
            params[CONVERT] = candidate.get(CONVERT, False)
        if len(self.precisions) > 1:
            params[PRECISION] = candidate.get(PRECISION, self.precisions[0])
        return params

    def candidate(self, params: dict[str, Any]) -> Candidate:
        """The candidate of a trial's params (inverse of `params`)."""
        family = params[FAMILY]
        candidate: Candidate = {FAMILY: family}
        candidate.update({k.split(".", 1)[1]: v for k, v in params.items() if k.startswith(family + ".")})
        for option in (CONVERT, PRECISION):
            if option in params:
                candidate[option] = params[option]
        return candidate

    # ---- seeds and enumeration ----------------------------------------------------------------------------
    def seeds(self) -> list[Candidate]:
        """Every family's default config for each precision and NCHW option, plus its heuristic configs for the
        first precision and the native layout: the search's starting points (hard constraints only)."""
        seeds: list[Candidate] = []
        for name, family in sorted(self.families.items()):
            for precision in self.precisions:
                problem = self.problem.with_(precision=precision)
                configs = [family.default_config(problem, self.device)]
                if precision == self.precisions[0]:
                    configs += family.heuristic_configs(problem, self.device)
                for config in configs:
                    for convert in self.convert_options:
                        candidate = self._with_options({FAMILY: name, **config}, precision, convert)
                        if candidate not in seeds and self.violation(candidate, pruning=False) is None:
                            seeds.append(candidate)
        return seeds

    def _with_options(self, candidate: Candidate, precision: str, convert: bool) -> Candidate:
        if len(self.convert_options) > 1:
            candidate[CONVERT] = convert
        if len(self.precisions) > 1:
            candidate[PRECISION] = precision
        return candidate

    def enumerate(self, limit: int) -> Optional[list[Candidate]]:
        """Every feasible candidate, or None if there are more than `limit` (then the space is not "small")."""
        found: list[Candidate] = []
        for candidate in self._iter_feasible(limit):
            found.append(candidate)
            if len(found) > limit:
                return None
        return found

    def _iter_feasible(self, limit: int) -> Iterator[Candidate]:
        for name in sorted(self.families):
            for precision in self.precisions:
                problem = self.problem.with_(precision=precision)
                space = self.family_space(name, problem)
                if space.size() > 1000 * max(limit, 1):
                    yield from ({} for _ in range(limit + 1))  # too big to enumerate: certainly not small
                    return
                for config in space.enumerate(problem):
                    for convert in self.convert_options:
                        yield self._with_options({FAMILY: name, **config}, precision, convert)


@lru_cache(maxsize=256)
def _space(family: KernelFamily, problem: ConvProblem, device: Optional[DeviceInfo]) -> ConfigSpace:
    return family.space(problem, device)

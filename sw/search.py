"""Searches over an exploration space behind one ask/tell interface.

A search hands out batches of configurations (:meth:`ask`, an empty batch when it is done) and
hears back their objective values (:meth:`tell`). Grid and random search are the trivial case
(one batch, nothing learned); :class:`Nsga2Search` drives optuna's NSGA-II sampler, one
generation per batch, so a whole generation is evaluated in parallel.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Protocol

from sparsa.config import ArrayConfig, ConfigError

from .design_space import ExploreSpec

__all__ = ["GridSearch", "Nsga2Search", "RandomSearch", "Search", "make_search"]


class Search(Protocol):
    """Ask for configurations, tell their objective values (``None``: the point failed)."""

    @property
    def total(self) -> int:
        """Configurations the search will evaluate at most."""
        ...

    def ask(self) -> list[ArrayConfig]: ...

    def tell(self, values: Mapping[ArrayConfig, Sequence[float] | None]) -> None: ...


class GridSearch:
    """Every configuration, in one batch."""

    def __init__(self, configs: Sequence[ArrayConfig]) -> None:
        self._configs = list(configs)
        self._asked = False

    @property
    def total(self) -> int:
        return len(self._configs)

    def ask(self) -> list[ArrayConfig]:
        if self._asked:
            return []
        self._asked = True
        return list(self._configs)

    def tell(self, values: Mapping[ArrayConfig, Sequence[float] | None]) -> None:
        pass


class RandomSearch(GridSearch):
    """``budget`` distinct configurations drawn uniformly with ``seed``, in one batch."""

    def __init__(self, configs: Sequence[ArrayConfig], budget: int, seed: int) -> None:
        chosen = random.Random(seed).sample(list(configs), min(budget, len(configs)))
        super().__init__(chosen)


class Nsga2Search:
    """optuna's NSGA-II over the space's values (categorical), one generation per batch.

    A configuration that ArrayConfig refuses or that fails a configuration constraint is told to
    optuna as failed and not evaluated; one drawn again is told its known values at once. Stops
    after ``budget`` distinct configurations, or when draws stop finding new ones.
    """

    def __init__(self, spec: ExploreSpec, configs: Sequence[ArrayConfig], budget: int,
                 seed: int, population: int) -> None:
        import optuna
        from optuna.samplers import NSGAIISampler

        # optuna logs every trial at INFO level; the sweep shows a progress bar instead.
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._spec = spec
        self._feasible = set(configs)
        self._budget = min(budget, len(self._feasible))
        self._population = population
        self._study = optuna.create_study(
            directions=["minimize" if o.sense == "min" else "maximize"
                        for o in spec.objectives],
            sampler=NSGAIISampler(population_size=population, seed=seed))
        self._known: dict[ArrayConfig, Sequence[float] | None] = {}
        self._pending: dict[ArrayConfig, list] = {}

    @property
    def total(self) -> int:
        return self._budget

    def _tell(self, trial, values: Sequence[float] | None) -> None:
        from optuna.trial import TrialState

        if values is None:
            self._study.tell(trial, state=TrialState.FAIL)
        else:
            self._study.tell(trial, list(values))

    def ask(self) -> list[ArrayConfig]:
        batch: list[ArrayConfig] = []
        attempts = 0
        while (len(self._known) + len(batch) < self._budget and len(batch) < self._population
               and attempts < 50 * self._population):
            attempts += 1
            trial = self._study.ask()
            point = {name: trial.suggest_categorical(name, list(values))
                     for name, values in self._spec.space}
            try:
                cfg = self._spec.config_of(point)
            except ConfigError:
                cfg = None
            if cfg is None or cfg not in self._feasible:
                self._tell(trial, None)
            elif cfg in self._known:
                self._tell(trial, self._known[cfg])
            else:
                self._pending.setdefault(cfg, []).append(trial)
                if cfg not in batch:
                    batch.append(cfg)
        return batch

    def tell(self, values: Mapping[ArrayConfig, Sequence[float] | None]) -> None:
        for cfg, v in values.items():
            self._known[cfg] = v
            for trial in self._pending.pop(cfg, []):
                self._tell(trial, v)


def make_search(spec: ExploreSpec, configs: Sequence[ArrayConfig] | None = None) -> Search:
    """The search the SPEC asks for, over its feasible configurations."""
    configs = spec.configs() if configs is None else configs
    s = spec.search
    if s.method == "grid":
        return GridSearch(configs)
    if s.method == "random":
        return RandomSearch(configs, s.budget, s.seed)
    return Nsga2Search(spec, configs, s.budget, s.seed, s.population)

"""Name -> function registries, so that variants are chosen by name, never by if/elif ladders."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    """A named table of functions that share one signature.

    >>> ops = Registry("op")
    >>> @ops.register("double")
    ... def double(x): return 2 * x
    >>> ops.get("double")(3)
    6
    >>> ops.names()
    ['double']
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._table: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            if name in self._table:
                raise KeyError(f"{self.kind} {name!r} is already registered")
            self._table[name] = fn
            return fn

        return deco

    def get(self, name: str) -> F:
        try:
            return self._table[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of {self.names()}") from None

    def names(self) -> list[str]:
        return sorted(self._table)

    def __contains__(self, name: object) -> bool:
        return name in self._table

"""Name -> class registries whose entries are imported on first use.

Reward backends and teachers are chosen by a string (CLI flags, configs, lm-eval
``model_args``). Built-in entries are ``"module:Class"`` paths, imported only when asked
for, so importing the packages stays cheap; third-party classes register with a decorator.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T", bound=type)

__all__ = ["Registry"]


class Registry(Generic[T]):
    """Classes by name; ``kind`` names the entries in error messages ("reward backend")."""

    def __init__(self, kind: str, paths: dict[str, str]) -> None:
        self.kind = kind
        self.paths: dict[str, str] = dict(paths)  # name -> "module:Class", not imported yet
        self.loaded: dict[str, T] = {}  # name -> class, once imported or registered

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator registering ``cls`` under ``name`` (and setting ``cls.name``).

        Registering the same class twice is a no-op; a different class under a taken name is
        a ValueError (a silent overwrite would swap a backend behind every caller's back).
        """

        def deco(cls: T) -> T:
            path = f"{cls.__module__}:{cls.__qualname__}"
            taken = self.loaded.get(name)
            if (taken is not None and taken is not cls) or self.paths.get(name, path) != path:
                other = self.paths.get(name) or f"{taken.__module__}:{taken.__qualname__}"
                raise ValueError(
                    f"{self.kind} name {name!r} is already registered to {other}; cannot "
                    f"register {path} under it (unregister({name!r}) first, or pick another name)"
                )
            self.loaded[name] = cls
            self.paths[name] = path
            cls.name = name
            return cls

        return deco

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a no-op when it is not registered)."""
        self.paths.pop(name, None)
        self.loaded.pop(name, None)

    def available(self) -> list[str]:
        return sorted(set(self.paths) | set(self.loaded))

    def cls(self, name: str) -> T:
        """The class registered as ``name`` (imports its module); ValueError listing the names."""
        if name in self.loaded:
            return self.loaded[name]
        if name not in self.paths:
            raise ValueError(f"unknown {self.kind} {name!r}; available: {', '.join(self.available())}")
        module, _, attr = self.paths[name].partition(":")
        cls = getattr(importlib.import_module(module), attr)
        self.loaded[name] = cls
        return cls

    def get(self, name: str, **config: Any) -> Any:
        """An instance of ``name`` built with its config fields as keyword arguments."""
        return self.cls(name)(**config)

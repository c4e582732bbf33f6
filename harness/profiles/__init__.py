"""Load profiles, one module each; this package finds them by itself."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from harness.profiles.base import BenchPlan, LoadOptions, PlanContext, Profile


def _discover() -> dict[str, type[Profile]]:
    found: dict[str, type[Profile]] = {}
    for mod in pkgutil.iter_modules(__path__):
        if mod.name in ("base", "schedule"):
            continue
        module = importlib.import_module(f"{__name__}.{mod.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(obj, Profile)
                and obj is not Profile
                and obj.__module__ == module.__name__
            ):
                found[obj.name] = obj
    return dict(sorted(found.items(), key=lambda kv: kv[1].order))


PROFILES: dict[str, type[Profile]] = _discover()

__all__ = ["PROFILES", "BenchPlan", "LoadOptions", "PlanContext", "Profile"]

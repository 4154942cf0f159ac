"""``"package.module:attr"`` references: the user's own rewards and environments from the command line.

One convention for both sides: gymnasium's ``module:EnvId`` (import the module, which registers
the env) and TRL's dotted reward functions (``module:function``). The module is imported from
``sys.path``, so a package of one's own is found when installed or on ``PYTHONPATH``; the current
folder is on the path too, as it is for ``python -m``.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any


def split_ref(ref: str, what: str) -> tuple[str, str]:
    """``"pkg.mod:name"`` -> ``("pkg.mod", "name")``; ValueError naming ``what`` when malformed.

    >>> split_ref("my_pkg.envs:Maze-v0", "env")
    ('my_pkg.envs', 'Maze-v0')
    """
    module, sep, name = ref.partition(":")
    if not sep or not module or not name or ":" in name:
        raise ValueError(f"{what} {ref!r}: expected MODULE:NAME (e.g. my_pkg.rewards:exact_json)")
    return module, name


def import_module(module: str, what: str) -> Any:
    """Import ``module`` (the current folder on the path too); ValueError naming ``what`` if it fails."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name and (module == err.name or module.startswith(err.name + ".")):  # the module itself, not one it imports
            raise ValueError(f"{what}: no module named {module!r} (install it, or put its folder on "
                             "PYTHONPATH)") from None
        raise ValueError(f"{what}: importing {module!r} failed: {err}") from None
    except Exception as err:  # noqa: BLE001 - the user's module raised while importing
        raise ValueError(f"{what}: importing {module!r} failed: {type(err).__name__}: {err}") from None


def load_attr(ref: str, what: str) -> Any:
    """The object ``ref`` (``"pkg.mod:name"``) names; ValueError in one line when it is not there."""
    module, name = split_ref(ref, what)
    mod = import_module(module, f"{what} {ref!r}")
    obj = mod
    for part in name.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n in dir(mod) if not n.startswith("_"))[:12]
            raise ValueError(f"{what} {ref!r}: module {module!r} has no attribute {name!r} (it has {public})")
        obj = getattr(obj, part)
    return obj

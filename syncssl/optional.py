"""Optional dependencies, imported on first use: a machine without them can still import every module, and only
the code that needs one fails, with an error that says what to install (a bare GPU machine often lacks PyAV)."""
from __future__ import annotations

import importlib


class Optional:
    """A module imported at its first attribute access: ``av = Optional("av", "...")``, then ``av.open(...)``."""

    def __init__(self, name: str, purpose: str):
        self._name, self._purpose = name, purpose

    def __getattr__(self, attr: str):
        module = self.__dict__.get("_module")
        if module is None:  # imported once: the decode loops read attributes per packet
            try:
                module = self._module = importlib.import_module(self._name)
            except ImportError as e:
                raise ImportError(f"{self._purpose} needs the {self._name!r} package, which is not installed "
                                  f"({e})") from None
        return getattr(module, attr)

    def available(self) -> bool:
        try:
            importlib.import_module(self._name)
        except ImportError:
            return False
        return True


av = Optional("av", "reading and writing videos (PyAV: pip install av)")

"""Files that declare a reproduction before it runs (the ablation presets, the protocol grids): found by name among
a package's TOML files or by path, read with tomllib, every error naming the file."""
from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from ..errors import ConfigError


def names(package: str) -> list[str]:
    """The names of the TOML files shipped in ``package``."""
    return sorted(p.name.removesuffix(".toml") for p in resources.files(package).iterdir() if p.name.endswith(".toml"))


def read(name: str | Path, package: str, what: str) -> tuple[Path, dict]:
    """The file ``name`` (a path, else ``<package>/<name>.toml``) and its TOML document."""
    path = Path(name)
    if not path.is_file():
        path = Path(str(resources.files(package).joinpath(f"{name}.toml")))
        if not path.is_file():
            raise ConfigError(f"unknown {what} {str(name)!r}: not a file, and not one of {', '.join(names(package))}")
    try:
        return path, tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: not a readable TOML {what} ({e})") from None


def need(path: Path, table: dict, key: str, kind: type, where: str = "", item: type | None = None):
    """``table[key]``, which must be a ``kind`` (a list: of ``item``); else a clear error naming ``path``."""
    value = table.get(key)
    if not isinstance(value, kind) or (item and not all(type(v) is item for v in value)):
        raise ConfigError(f"{path}: {where}{key} must be a {kind.__name__}"
                          f"{f' of {item.__name__}' if item else ''}, got {value!r}")
    return value

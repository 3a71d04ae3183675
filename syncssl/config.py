"""Dataclass configs: TOML files in, dotted overrides on top, the resolved config saved with every run.

Every field of a config dataclass carries an attribute docstring (the string literal on the line after it,
as in torchtitan) or, in the dataclasses that live beside their code (sampling, models), a trailing comment;
:func:`field_docs` reads either back for ``--help-config``, the saved ``config.toml`` and error messages.
Fields may declare their valid values with ``choices(...)`` metadata.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize
import tomllib
import types
import typing
from functools import cache
from pathlib import Path

from .errors import ConfigError


def choices(default, *values, **kw):
    """A dataclass field whose value must be one of ``values``."""
    return dataclasses.field(default=default, metadata={"choices": tuple(values)}, **kw)


@cache
def field_docs(cls) -> dict[str, str]:
    """What each field of a dataclass is: its attribute docstring (``x: int = 1`` followed by ``\"\"\"what x
    is\"\"\"``), else its trailing comment (``x: int = 1  # what x is``) with the comment-only lines that continue it
    (``#`` followed by the alignment spaces)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
            tree = ast.parse(source)
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        comments = _comments(source)
        for node, nxt in zip(body, body[1:] + [None]):
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                continue
            if (isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
            elif node.end_lineno in comments and not comments[node.end_lineno][0]:
                parts, line = [comments[node.end_lineno][1].strip()], node.end_lineno + 1
                while line in comments and comments[line][0] and comments[line][1].startswith("  "):
                    parts.append(comments[line][1].strip())
                    line += 1
                docs[node.target.id] = " ".join(" ".join(parts).split())
    return docs


def _comments(source: str) -> dict[int, tuple[bool, str]]:
    """line number -> (the line holds only the comment, the comment's text after ``#``)."""
    out = {}
    lines = source.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            row, col = tok.start
            out[row] = (not lines[row - 1][:col].strip(), tok.string[1:])
    return out


def _convert(value, typ, where: str):
    """Coerce a TOML or command-line value to the field's annotated type."""
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (value is None or (isinstance(value, str) and value.lower() in ("none", "null"))):
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: cannot use {value!r}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.strip("[]").split(",") if v.strip()] if value.strip("[] ") else []
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else str
        out = [_convert(v, inner, where) for v in value]
        return tuple(out) if origin is tuple else out
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if typ in (int, float, str):
        if typ is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if typ is str and not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        try:
            return typ(float(value)) if typ is int and isinstance(value, str) and "e" in value.lower() else typ(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {typ.__name__}, got {value!r}") from None
    return value


def _hints(cls):
    return typing.get_type_hints(cls)


def _field_value(obj, name: str, value, where: str):
    """The checked, converted new value of field ``name`` (a section: the updated sub-config)."""
    f = {f.name: f for f in dataclasses.fields(obj)}[name]
    typ = _hints(type(obj))[name]
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: is a section; set its fields, e.g. {where}.<field>=...")
        return update(getattr(obj, name), value, where)
    value = _convert(value, typ, where)
    allowed = f.metadata.get("choices")
    if allowed and value not in allowed:
        raise ConfigError(f"{where}: {value!r} is not a valid choice; choose one of {', '.join(map(str, allowed))}")
    return value


def update(obj, values: dict, prefix: str = ""):
    """A copy of config dataclass ``obj`` with a nested dict (as read from TOML) applied, every key and value
    checked. Built with ``dataclasses.replace``, so frozen sections work and their ``__post_init__`` checks run."""
    names = {f.name for f in dataclasses.fields(obj)}
    changes = {}
    for key, value in values.items():
        where = f"{prefix}.{key}" if prefix else key
        if key not in names:
            raise ConfigError(f"unknown config key {where!r}; valid keys here: {', '.join(sorted(names))}")
        changes[key] = _field_value(obj, key, value, where)
    try:
        return dataclasses.replace(obj, **changes)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{prefix or 'config'}: {e}") from None


def parse_override(text: str) -> dict:
    """``a.b.c=value`` -> {"a": {"b": {"c": "value"}}}; the value is a TOML literal when it parses as one."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def _merge(into: dict, new: dict):
    """Nested dict ``new`` into ``into``; a later value of the same key wins."""
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def load(cls, path: Path | None = None, overrides: list[str] = (), base=None):
    """``cls()`` (or ``base``), then the TOML file at ``path``, then the dotted overrides."""
    cfg = base if base is not None else cls()
    if path is not None:
        path = Path(path)
        try:
            cfg = update(cfg, tomllib.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}): "
                              "a binary or damaged file, not a TOML config") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML ({e})") from None
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    merged: dict = {}  # all overrides applied at once: a section's checks see its final values, in any order
    for o in overrides:
        _merge(merged, parse_override(o))
    if merged:
        cfg = update(cfg, merged)
    validate = getattr(cfg, "validate", None)
    if validate:
        validate()
    return cfg


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if v is None:
        return '"none"'
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_toml(cfg, prefix: str = "") -> str:
    """The resolved config as TOML, with each field's docstring as a comment."""
    docs = field_docs(type(cfg))
    scalars, sections = [], []
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            sections.append(to_toml(v, f"{prefix}{f.name}."))
        else:
            doc = docs.get(f.name)
            if doc:
                scalars.append(f"# {doc}")
            scalars.append(f"{f.name} = {_toml_value(v)}")
    head = [f"[{prefix[:-1]}]"] if prefix and scalars else []
    return "\n".join(head + scalars + ([""] if scalars else []) + sections)


def describe(cls, prefix: str = "", obj=None) -> list[tuple[str, str, str]]:
    """(key, value, doc) rows for every field, sections flattened with dots: the values of ``obj`` (a resolved
    config, e.g. a preset's), or the dataclass defaults."""
    rows = []
    docs = field_docs(cls)
    obj = cls() if obj is None else obj
    for f in dataclasses.fields(cls):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            rows += describe(type(v), f"{prefix}{f.name}.", v)
        else:
            allowed = f.metadata.get("choices")
            doc = docs.get(f.name, "") + (f" [{' | '.join(map(str, allowed))}]" if allowed else "")
            rows.append((prefix + f.name, _toml_value(v), doc))
    return rows

"""Loading: `conf/default.yaml` + optional override file + `--set key=value`, walked against
the section dataclasses, relative paths anchored where they were written."""

from __future__ import annotations

import dataclasses
import types
import typing
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from duia_spark.config.paths import (
    DEFAULT_CONF,
    PATH_KEYS,
    anchor_path,
    duia_home,
    shipped_conf_dir,
)
from duia_spark.config.sections import Config, ConfigError


def _check_type(value: Any, tp: Any, key: str) -> Any:
    """Return `value` converted to `tp` where the conversion is lossless, else raise."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return _build_nested(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError("; ".join(errors))
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        return [_check_type(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        k_tp, v_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        if v_tp is str:  # a map of settings (spark.extra): 4 / true are "4" / "true"
            value = {k: _as_setting(v) for k, v in value.items()}
        return {
            _check_type(k, k_tp, f"{key}"): _check_type(v, v_tp, f"{key}.{k}")
            for k, v in value.items()
        }
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if tp is Any:
        return value
    raise ConfigError(f"{key}: unsupported config type {tp!r}")


def _as_setting(value: Any) -> Any:
    """A YAML scalar as the string a setting (Spark's conf) spells it; others unchanged."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


def _deep_update(base: dict, upd: dict) -> dict:
    out = dict(base)
    for k, v in upd.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_update(out[k], v)
        else:
            out[k] = v
    return out


def _split_key(key: str) -> list[str]:
    """A dotted --set key as the path of config fields it names. Below a mapping field
    (`spark.extra`, `features.user_categorical`, ...) the rest is one key, dots and all:
    `spark.extra.spark.sql.adaptive.enabled` → ["spark", "extra", "spark.sql.adaptive.enabled"]."""
    parts = key.strip().split(".")
    cls: Any = Config
    for i, name in enumerate(parts[:-1]):
        tp = typing.get_type_hints(cls).get(name) if dataclasses.is_dataclass(cls) else None
        if typing.get_origin(tp) is dict:
            return [*parts[: i + 1], ".".join(parts[i + 1 :])]
        if not dataclasses.is_dataclass(tp):
            break  # not a config section: the unknown-key check names it
        cls = tp
    return parts


def _parse_override(item: str) -> dict:
    """`a.b.c=value` → {"a": {"b": {"c": value}}}, value parsed as YAML scalar/list."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    value = yaml.safe_load(raw) if raw != "" else ""
    out: dict = {}
    cur = out
    parts = _split_key(key)
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


def _read_yaml(path: Path | Traversable) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping")
    return data


def find_conf_file(conf: str | Path | Traversable) -> Path | Traversable:
    """A config file as given: a path (relative to the current directory), or the bare
    name of a shipped config (`demo`, `kuairand.yaml`) when no such file is here."""
    if not isinstance(conf, (str, Path)):
        return conf  # already a shipped config's Traversable
    path = Path(conf).expanduser()
    if path.is_file():
        return path.absolute()
    if str(conf) == path.name:
        for name in (path.name, f"{path.name}.yaml"):
            shipped = shipped_conf_dir() / name
            if shipped.is_file():
                return shipped
    names = sorted(f.name for f in shipped_conf_dir().iterdir() if f.name.endswith(".yaml"))
    raise ConfigError(
        f"config file not found: {path.absolute()} (shipped configs: {', '.join(names)})"
    )


def _relative_paths_base(file: Path | Traversable) -> Path:
    """Where a config file's relative paths start: the home for a shipped config, else
    the file's own folder."""
    shipped = shipped_conf_dir()
    if not isinstance(file, Path):  # read from a zipped wheel: shipped
        return duia_home()
    if isinstance(shipped, Path) and file.resolve().parent == shipped.resolve():
        return duia_home()
    return file.absolute().parent


def _anchor_paths(data: dict, base: Path) -> dict:
    """One layer of settings (a file, an override) with its relative PATH_KEYS made
    absolute from `base`; `data` itself is left as it was."""
    out = dict(data)
    for key in PATH_KEYS:
        *sections, name = key.split(".")
        node = out
        for section in sections:
            if not isinstance(node.get(section), dict):
                break
            node[section] = dict(node[section])
            node = node[section]
        else:
            if isinstance(node.get(name), str):
                node[name] = anchor_path(node[name], base)
    return out


def load_config(
    conf_file: str | Path | Traversable | None = None,
    overrides: list[str] | None = None,
    base_file: str | Path | Traversable = DEFAULT_CONF,
) -> Config:
    """Load defaults, then the optional override file, then `key=value` overrides; each
    layer's relative paths resolve where it was written (module docstring)."""
    base = find_conf_file(base_file)
    data = _anchor_paths(_read_yaml(base), _relative_paths_base(base))
    if conf_file:
        conf = find_conf_file(conf_file)
        data = _deep_update(data, _anchor_paths(_read_yaml(conf), _relative_paths_base(conf)))
    cwd = Path.cwd()
    for item in overrides or []:
        data = _deep_update(data, _anchor_paths(_parse_override(item), cwd))
    return _build_nested(Config, data, "")


def _build_nested(cls: type, data: dict, prefix: str) -> Any:
    """Build a dataclass whose nested dataclass fields start from their own defaults."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown config key {where}{unknown[0]} (known keys here: {', '.join(sorted(names))})"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
            kwargs[name] = _build_nested(tp, value, key)
        else:
            kwargs[name] = _check_type(value, tp, key)
    return cls(**kwargs)


def config_as_flat_dict(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """`{"spark.master": "local[*]", ...}` — for logging every value as an MLflow param."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(v):
            out.update(config_as_flat_dict(v, key + "."))
        else:
            out[key] = v
    return out

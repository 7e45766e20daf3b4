import dataclasses
import datetime as dt
import types
import typing

import pytest
import yaml

from duia_spark.config import DEFAULT_CONF, Config, ConfigError, TrainConfig, load_config
from duia_spark.model.config import ModelConfig


def test_defaults_load_into_typed_sections():
    cfg = load_config()
    assert cfg.activity.window_days == 30
    assert cfg.spark.master == "local[*]"
    assert cfg.tracking_uri.startswith("sqlite:////")  # made absolute under the project


def test_an_unknown_key_fails_naming_the_key():
    with pytest.raises(ConfigError, match=r"activity\.windw_days"):
        load_config(overrides=["activity.windw_days=3"])


def test_a_wrong_type_fails_naming_the_key():
    with pytest.raises(ConfigError, match=r"activity\.window_days: expected an integer"):
        load_config(overrides=["activity.window_days=thirty"])
    with pytest.raises(ConfigError, match=r"train\.local_mode: expected true/false"):
        load_config(overrides=["train.local_mode=maybe"])


def test_override_file_is_merged_over_defaults_and_set_wins(tmp_path):
    f = tmp_path / "prod.yaml"
    f.write_text("spark:\n  master: spark://h:7077\nactivity:\n  window_days: 14\n")
    cfg = load_config(f, overrides=["activity.window_days=7"])
    assert cfg.spark.master == "spark://h:7077"
    assert cfg.spark.shuffle_partitions == 8  # untouched sibling keeps its default
    assert cfg.activity.window_days == 7


def test_a_set_key_below_a_mapping_keeps_its_dots_and_settings_become_strings():
    cfg = load_config(
        overrides=[
            "spark.extra.spark.sql.maxConcurrentOutputFileWriters=4",
            "spark.extra.spark.sql.adaptive.enabled=false",
            "features.user_categorical.user_active_degree=8",
        ]
    )
    assert cfg.spark.extra["spark.sql.maxConcurrentOutputFileWriters"] == "4"
    assert cfg.spark.extra["spark.sql.adaptive.enabled"] == "false"
    assert cfg.features.user_categorical == {"user_active_degree": 8}
    with pytest.raises(ConfigError, match=r"features\.user_categorical\.a\.b: expected an integer"):
        load_config(overrides=["features.user_categorical.a.b=many"])


def test_missing_override_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def _field_paths(cls, prefix: str = "") -> set[str]:
    out = set()
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            out |= _field_paths(tp, f"{prefix}{f.name}.")
        else:
            out.add(f"{prefix}{f.name}")
    return out


def _yaml_paths(data: dict, cls, prefix: str = "") -> set[str]:
    out = set()
    hints = typing.get_type_hints(cls)
    for k, v in data.items():
        tp = hints.get(k)
        if tp is not None and dataclasses.is_dataclass(tp) and isinstance(v, dict):
            out |= _yaml_paths(v, tp, f"{prefix}{k}.")
        else:
            out.add(f"{prefix}{k}")
    return out


def test_every_config_field_is_documented_in_default_yaml():
    documented = _yaml_paths(yaml.safe_load(DEFAULT_CONF.read_text()), Config)
    assert sorted(_field_paths(Config) - documented) == []


def _differences(shipped, declared, key: str) -> list[str]:
    """Where a value of default.yaml and the dataclass default differ, by dotted key."""
    if isinstance(shipped, dict) and isinstance(declared, dict):
        out = [f"{key}.{k}: only in the dataclass" for k in declared.keys() - shipped.keys()]
        out += [f"{key}.{k}: only in default.yaml" for k in shipped.keys() - declared.keys()]
        for k in shipped.keys() & declared.keys():
            out += _differences(shipped[k], declared[k], f"{key}.{k}")
        return out
    if isinstance(shipped, list) and isinstance(declared, list) and len(shipped) == len(declared):
        return [
            d
            for i, (a, b) in enumerate(zip(shipped, declared, strict=True))
            for d in _differences(a, b, f"{key}[{i}]")
        ]
    # 1 == True and 300 == 300.0 in Python: a bool must also be a bool on the other side.
    if shipped != declared or isinstance(shipped, bool) != isinstance(declared, bool):
        return [f"{key}: default.yaml {shipped!r}, dataclass {declared!r}"]
    return []


def test_default_yaml_ships_exactly_the_dataclass_defaults():
    """One source of defaults: the dataclasses; default.yaml lists them, value for value."""
    shipped = yaml.safe_load(DEFAULT_CONF.read_text())
    assert _differences(shipped, dataclasses.asdict(Config()), "conf/default.yaml") == []


def _documented_switches(section: str) -> dict[str, str]:
    """docs/model.md's switch table of `section` (a heading naming it): field -> default."""
    doc = DEFAULT_CONF.parent.parent / "docs" / "model.md"
    rows, inside = {}, False
    for line in doc.read_text().splitlines():
        if line.startswith("## "):
            inside = f"`{section}`" in line
        elif inside and line.startswith("| `"):
            field, default = (cell.strip() for cell in line.split(" | ")[:2])
            rows[field.strip("|` ")] = default.strip("`")
    return rows


def _as_documented(value) -> str:
    """A default as the table (and YAML) spells it: `[a, b]`, `{a: 1.0}`, `true`, `''`."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False)
    return text.removesuffix("...\n").strip()


@pytest.mark.parametrize(
    ("section", "cls"), [("ModelConfig", ModelConfig), ("TrainConfig", TrainConfig)]
)
def test_docs_switch_table_names_every_field_with_its_default_and_nothing_else(section, cls):
    documented = _documented_switches(section)
    declared = {f: _as_documented(v) for f, v in dataclasses.asdict(cls()).items()}
    assert sorted(documented.keys() - declared.keys()) == []  # no retired or misspelt field
    assert sorted(declared.keys() - documented.keys()) == []  # every field has a row
    wrong = {f: (documented[f], d) for f, d in declared.items() if documented[f] != d}
    assert wrong == {}, "field: (docs/model.md, dataclass)"


def test_config_sections_only_use_types_the_loader_understands():
    allowed = {int, float, bool, str}

    def walk(cls):
        for f in dataclasses.fields(cls):
            tp = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(tp):
                walk(tp)
            elif typing.get_origin(tp) in (list, dict, types.UnionType):
                assert set(typing.get_args(tp)) <= allowed, (cls.__name__, f.name, tp)
            else:
                assert tp in allowed, (cls.__name__, f.name, tp)

    walk(Config)


def test_a_local_driver_declares_the_machines_gpus_for_torchdistributor(tmp_path):
    import dataclasses
    import json
    import subprocess

    from duia_spark.config import load_config
    from duia_spark.session import local_gpu_resources

    cfg = load_config(overrides=[f"state_dir={tmp_path}"])
    got = local_gpu_resources(cfg, gpus=2)
    assert got["spark.driver.resource.gpu.amount"] == "2"
    out = subprocess.run([got["spark.driver.resource.gpu.discoveryScript"]], capture_output=True)
    assert json.loads(out.stdout) == {"name": "gpu", "addresses": ["0", "1"]}
    assert local_gpu_resources(cfg, gpus=0) == {}
    off = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, use_gpu=False))
    assert local_gpu_resources(off, gpus=2) == {}
    cluster = dataclasses.replace(cfg, spark=dataclasses.replace(cfg.spark, master="yarn"))
    assert local_gpu_resources(cluster, gpus=2) == {}


def test_the_temporal_split_puts_the_validation_window_last_and_the_training_days_before_it():
    from duia_spark.training.split import temporal_split

    d = dt.date(2026, 1, 10)
    one = temporal_split(d, train_days=3)
    assert (one.train_first, one.train_last) == (dt.date(2026, 1, 7), dt.date(2026, 1, 9))
    assert one.validation_first == one.validation_last == d
    assert one.describe_validation() == "2026-01-10"
    two = temporal_split(d, train_days=3, validation_days=2)
    assert (two.train_first, two.train_last) == (dt.date(2026, 1, 6), dt.date(2026, 1, 8))
    assert (two.validation_first, two.validation_last) == (dt.date(2026, 1, 9), d)
    assert two.validation_days == 2 and two.describe_validation() == "2026-01-09..2026-01-10"
    assert one.no_samples_message("validation") == (
        "no validation samples for 2026-01-10: run `duia samples` for that date"
    )
    assert two.no_samples_message("validation").endswith(
        "2026-01-09..2026-01-10: run `duia samples` for those dates"
    )
    single = temporal_split(d, train_days=1)
    assert single.no_samples_message("training").endswith(
        "samples for 2026-01-09: run `duia samples` for that date"
    )
    assert one.no_samples_message("training").endswith(
        "2026-01-07..2026-01-09: run `duia samples` for those dates"
    )


@pytest.mark.parametrize("knob", ["train_days", "validation_days"])
def test_training_and_validation_days_below_one_are_refused_naming_the_knob(knob):
    with pytest.raises(ConfigError, match=f"train.{knob}: expected a whole number >= 1, got 0"):
        load_config(overrides=[f"train.{knob}=0"])

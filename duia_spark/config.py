"""Typed configuration: `conf/default.yaml` + optional override file + `--set key=value`.

Every section is a dataclass; loading walks the YAML against the dataclass fields,
so an unknown key or a value of the wrong type fails at start-up with the key's
dotted name, not an hour later inside a Spark job.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from duia_spark.model.config import ModelConfig

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONF = PROJECT_ROOT / "conf" / "default.yaml"
# train.residual_fit: where the residual head learns (training/residual_refit.py)
RESIDUAL_FITS = ("train", "held_out")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


@dataclass
class SparkConfig:
    master: str = "local[*]"
    app_name: str = "duia-spark"
    log_level: str = "WARN"
    shuffle_partitions: int = 8
    driver_memory: str = "4g"
    # Folder holding Ivy's resolved Delta jars; filled once by `make setup`.
    jars_cache: str = ".duia/ivy"
    # Extra `spark.*` settings passed through verbatim.
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class TablesConfig:
    events: str = "bronze/events"
    events_rejected: str = "bronze/events_rejected"
    files_rejected: str = "bronze/files_rejected"
    user_profiles: str = "bronze/user_profiles"
    item_features: str = "bronze/item_features"
    user_activity: str = "silver/user_activity"
    user_sequences: str = "silver/user_sequences"
    item_stats: str = "silver/item_stats"
    vocabulary: str = "silver/vocabulary"
    samples: str = "gold/samples"
    scores: str = "gold/scores"
    run_ledger: str = "ops/run_ledger"


@dataclass
class LakehouseConfig:
    root: str = ".duia/lakehouse"
    tables: TablesConfig = field(default_factory=TablesConfig)


@dataclass
class IngestConfig:
    # Timezone of the calendar day a drop is named after (and of KuaiRand's `date`).
    source_timezone: str = "UTC"
    # A play time longer than this many times the video's duration is rejected as absurd.
    max_play_to_duration_ratio: float = 20.0
    # Any single time field above this (ms) is rejected as absurd (default 1 day).
    max_duration_ms: int = 86_400_000
    # Event times outside [min_event_date, max_event_date) are rejected as absurd.
    min_event_date: str = "1990-01-01"
    max_event_date: str = "2100-01-01"
    # Behaviour when the drop for the requested date has no files: "fail" or "skip".
    on_missing_drop: str = "fail"
    # A raw file that cannot be read at all (truncated or corrupt Parquet, cut-short gzip):
    # "fail" names it and stops; "quarantine" records it in bronze.files_rejected and
    # lands the rest of the drop.
    on_corrupt_file: str = "fail"
    # MovieLens logs only ratings; per rating, draw this many same-day items the user never
    # rated as unrated exposures (click = 0, other signals unknown). 0 = off.
    movielens_unrated_per_rating: int = 0
    unrated_seed: int = 0  # seed of those draws (deterministic re-runs)


@dataclass
class GeneratorConfig:
    users: int = 2000
    items: int = 500
    days: int = 28
    seed: int = 1
    start_date: str = "2026-01-01"
    groups: int = 8
    topics: int = 8
    latent_dim: int = 8
    categories: int = 16
    authors: int = 200
    # Output formats of the daily drops: any of csv, parquet.
    formats: list[str] = field(default_factory=lambda: ["csv"])
    # Mean exposures per active day of the most active user; activity is heavy-tailed.
    max_events_per_active_day: int = 60
    partitions: int = 8


@dataclass
class ActivityConfig:
    window_days: int = 30
    # An interaction counts as "valid" if any of these signals is 1 ...
    valid_signals: list[str] = field(default_factory=lambda: ["long_view"])
    # ... or its play time reaches this many milliseconds (0 disables the rule).
    valid_min_play_time_ms: int = 0
    low_max_active_days: int = 5  # low-active: fewer active days than this ...
    low_min_valid_interactions: int = 20  # ... or fewer valid interactions than this
    high_min_active_days: int = 20  # high-active: at least this many active days


@dataclass
class SequenceConfig:
    exposures_len: int = 50
    positives_len: int = 20
    negatives_len: int = 10
    positive_signals: list[str] = field(
        default_factory=lambda: ["long_view", "like", "share", "follow"]
    )
    negative_signals: list[str] = field(default_factory=lambda: ["hate"])
    # Behaviour when a date has no events: "empty" (write empty partition) or "skip".
    on_missing_events: str = "empty"


@dataclass
class ItemStatsConfig:
    windows_days: list[int] = field(default_factory=lambda: [1, 7, 30])
    # Signals whose count and rate (count / exposures) are kept per window.
    rate_signals: list[str] = field(default_factory=lambda: ["click", "long_view", "like"])


@dataclass
class FeaturesConfig:
    """Side information each source declares (`docs/model.md`, "Side features").

    Categorical columns are hashed into their number of buckets (0 = missing) and get one
    embedding each; numeric columns are appended to user_dense / item_dense as
    sign(x)·log1p(|x|)."""

    # Profile columns (bronze.user_profiles.attributes) -> hash buckets.
    user_categorical: dict[str, int] = field(default_factory=dict)
    user_numeric: list[str] = field(default_factory=list)
    # Item table columns (bronze.item_features.attributes) -> hash buckets.
    item_categorical: dict[str, int] = field(default_factory=dict)
    item_numeric: list[str] = field(default_factory=list)
    # An item column holding its upload date: days since upload at D (freshness),
    # appended to item_dense ("" = off).
    item_upload_date: str = ""
    # Columns of the exposure itself (bronze.events: `tab`, the app surface) -> buckets.
    context_categorical: dict[str, int] = field(default_factory=dict)


@dataclass
class TrainConfig:
    train_days: int = 14
    # The last `validation_days` days up to D validate (epoch choice, residual gate,
    # evaluate); the `train_days` days before them train (training/split.py).
    validation_days: int = 1
    epochs: int = 3
    batch_size: int = 1024
    lr: float = 0.002
    num_processes: int = 1
    local_mode: bool = True
    # "auto" (CUDA + nccl when a GPU is visible, else CPU + gloo), true or false.
    use_gpu: bool | str = "auto"
    early_stopping_patience: int = 2
    checkpoint_dir: str = ".duia/checkpoints"
    petastorm_cache_dir: str = ".duia/petastorm"
    # Stop after this many epochs of one invocation (time-boxing); the run stays resumable
    # with --resume and registers nothing until it finishes. 0 = off.
    stop_after_epochs: int = 0
    # Validation metric for early stopping and for picking the epoch that is kept.
    selection_metric: str = "auc/click/all"
    # Each epoch also validates the mean of the weights after epochs 1..e (weight
    # averaging) and keeps whichever of the two validates better (training/weight_average.py).
    average_weights: bool = False
    # The cluster memories (centres, UPBE slots, item memory) and the query tower learn
    # during the first `memory_epochs` epochs only; later epochs train the ranker on the
    # memories as they stand, as it will read them when serving. 0 = they learn throughout.
    memory_epochs: int = 0
    # Residual fusion only: after training, the head's correction is kept for an activity
    # segment only where it beats the base ranker alone on the validation day by more than
    # `residual_gate_margin` (the selection metric, read per segment); the other segments
    # are served the base ranker's score (training/residual_gate.py). False: every segment
    # keeps the head.
    residual_gate: bool = True
    # One validation day moves the selection metric by a few thousandths from seed to seed:
    # a smaller lead is noise (docs/quality.md). The same scale as the guard's tolerance.
    residual_gate_margin: float = 0.002
    # ... and the head must rank the segment's users' rows better at p < `residual_gate_alpha`
    # (one-sided Wilcoxon signed-rank test over the users of D of their per-user AUC with
    # minus without the head, on the selection metric's binary tasks). 1.0 = no test.
    residual_gate_alpha: float = 0.05
    # Residual fusion only: where the head learns. "train": beside the base ranker, on the
    # training rows (from the second epoch on, rows the base has already fitted).
    # "held_out": after the base's weights are chosen, the head is reset and fitted for
    # `residual_refit_epochs` passes, the base held fixed, on the validation day's rows of
    # half its users (rows the base never trained on); the residual gate then judges it on
    # the other half (training/residual_refit.py).
    residual_fit: str = "train"
    residual_refit_epochs: int = 3
    cold_start: bool = False
    warm_start_weights: bool = False

    def __post_init__(self) -> None:
        for name in ("train_days", "validation_days"):  # the loader has made them ints
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"train.{name}: expected a whole number >= 1, got {getattr(self, name)!r}"
                )
        if self.residual_gate_margin < 0:
            raise ConfigError(
                f"train.residual_gate_margin: expected a number >= 0, got {self.residual_gate_margin}"
            )
        if not 0 < self.residual_gate_alpha <= 1:
            raise ConfigError(
                f"train.residual_gate_alpha: expected a p-value threshold in (0, 1] "
                f"(1 = no test), got {self.residual_gate_alpha}"
            )
        if self.residual_fit not in RESIDUAL_FITS:
            raise ConfigError(
                f"train.residual_fit: expected one of {list(RESIDUAL_FITS)}, got "
                f"{self.residual_fit!r}"
            )
        if self.residual_refit_epochs < 1:
            raise ConfigError(
                f"train.residual_refit_epochs: expected >= 1, got {self.residual_refit_epochs}"
            )
        if self.memory_epochs < 0:
            raise ConfigError(
                f"train.memory_epochs: expected 0 (the memories learn in every epoch) or a "
                f"positive number of epochs, got {self.memory_epochs}"
            )


@dataclass
class ScoreConfig:
    # Candidate generator: "popular", "cluster" or "table" (see conf/default.yaml).
    generator: str = "popular"
    # Who is scored: "active" (events in the last `active_window_days` before D) or
    # "all" (every user in silver.user_activity for D).
    users: str = "active"
    active_window_days: int = 7
    # popular: the `popular_items` items ranked by `popular_metric` ("exposures" or a
    # signal of item_stats.rate_signals: its count) over `popular_window_days`, which
    # must be one of item_stats.windows_days; read from silver.item_stats as of D.
    popular_metric: str = "long_view"
    popular_window_days: int = 7
    popular_items: int = 300
    # cluster: per GHCA level-1 user cluster, the `cluster_items` items most often
    # consumed positively (sequences.positive_signals) in the last `cluster_window_days`.
    cluster_window_days: int = 7
    cluster_items: int = 200
    # table: a Delta or Parquet table with user_id, item_id (and optionally score_date).
    candidate_table: str = ""
    # Items the user was exposed to in this many days before D are not candidates
    # (0: all history).
    exclude_window_days: int = 0
    # Candidates scored per user at most (the generator's own order decides).
    max_candidates_per_user: int = 500
    # Combined score = sum of weight x task score; tasks not listed weigh 0.
    task_weights: dict[str, float] = field(
        default_factory=lambda: {
            "click": 0.2,
            "long_view": 1.0,
            "like": 0.5,
            "follow": 0.5,
            "comment": 0.3,
            "share": 0.5,
        }
    )
    top_k: int = 50  # rows kept per user in gold.scores
    batch_size: int = 4096  # rows per model call inside a Python worker
    worker_threads: int = 1  # torch threads per Spark Python worker (0: torch default)


@dataclass
class EvaluateConfig:
    # Variants trained beside the main model on the same data and compared with it
    # (logged as runs, never registered).
    baselines: list[str] = field(default_factory=lambda: ["ple"])
    # The generator's truth folder (DIR/truth) for the simulated feed; "" skips it.
    truth_dir: str = ""
    feed_size: int = 5  # items per simulated feed
    simulation_rank_task: str = "long_view"  # the task score that orders the feed
    gate_metric: str = "auc"  # auc | gauc
    gate_task: str = "click"
    # Largest allowed drop against the champion, per segment ("all" too).
    gate_tolerances: dict[str, float] = field(
        default_factory=lambda: {"all": 0.005, "low": 0.01, "mid": 0.01, "high": 0.01}
    )
    auc_bins: int = 100_000  # score buckets of the Spark AUC
    # The baseline guard: when a baseline of the same night beats the new model beyond
    # gate_tolerances in any segment on any guarded metric x task, the baseline is
    # registered and gated in its place (the new model never serves).
    baseline_guard: bool = True
    # The guard's own largest allowed drop against a baseline, per segment; {} = the
    # gate's. The baseline is trained on the same rows and scored on the same day, so a
    # deployment can hold the new model to a tighter bound here than to the champion.
    guard_tolerances: dict[str, float] = field(default_factory=dict)
    guard_metrics: list[str] = field(default_factory=lambda: ["auc"])
    guard_tasks: list[str] = field(default_factory=list)  # [] = every model task
    guard_min_positives: int = 100  # cells with fewer positives on D are not guarded

    @property
    def guard_tolerance_map(self) -> dict[str, float]:
        return dict(self.guard_tolerances or self.gate_tolerances)


@dataclass
class MlflowConfig:
    tracking_uri: str = "sqlite:///.duia/mlflow.db"
    artifact_root: str = ".duia/mlartifacts"
    experiment: str = "duia-ranker"
    registered_model: str = "duia-ranker"
    champion_alias: str = "champion"


@dataclass
class OpsConfig:
    # A run of a date holds a lease (`<lakehouse.root>/_leases/<date>.json`) whose
    # heartbeat a background thread refreshes every `heartbeat_seconds`; a lease whose
    # heartbeat is older than `lease_ttl_seconds` belongs to a dead run and is taken over.
    lease_ttl_seconds: float = 300.0
    heartbeat_seconds: float = 30.0


@dataclass
class Config:
    # Local state (lakehouse, MLflow store, caches) lives under this folder by default.
    state_dir: str = ".duia"
    spark: SparkConfig = field(default_factory=SparkConfig)
    lakehouse: LakehouseConfig = field(default_factory=LakehouseConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    activity: ActivityConfig = field(default_factory=ActivityConfig)
    sequences: SequenceConfig = field(default_factory=SequenceConfig)
    item_stats: ItemStatsConfig = field(default_factory=ItemStatsConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    ops: OpsConfig = field(default_factory=OpsConfig)

    def resolve_path(self, path: str) -> str:
        """Relative paths in config are relative to the project root, not the cwd."""
        if "://" in path:
            return path
        p = Path(path).expanduser()
        return str(p if p.is_absolute() else PROJECT_ROOT / p)

    @property
    def lakehouse_root(self) -> str:
        return self.resolve_path(self.lakehouse.root)

    @property
    def tracking_uri(self) -> str:
        uri = self.mlflow.tracking_uri
        prefix = "sqlite:///"
        if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
            return prefix + self.resolve_path(uri[len(prefix) :])
        return uri


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


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping")
    return data


def load_config(
    conf_file: str | Path | None = None,
    overrides: list[str] | None = None,
    base_file: str | Path = DEFAULT_CONF,
) -> Config:
    """Load defaults, then the optional override file, then `key=value` overrides."""
    data = _read_yaml(Path(base_file))
    if conf_file:
        data = _deep_update(data, _read_yaml(Path(conf_file)))
    for item in overrides or []:
        data = _deep_update(data, _parse_override(item))
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

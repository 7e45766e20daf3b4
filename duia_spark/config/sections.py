"""The configuration's sections, one dataclass each, with the shipped defaults
(`conf/default.yaml` equals them; tests/config/test_config.py holds the two equal)."""

from __future__ import annotations

from dataclasses import dataclass, field

from duia_spark.config.paths import anchor_path, duia_home
from duia_spark.model.config import ModelConfig


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
    stale_days: str = "ops/stale_days"


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
    # Share of a day's exposures drawn from the user's group's favourite topic (the rest
    # from a popularity-skewed draw over the catalogue).
    targeted_share: float = 0.5
    # Popularity draw: item = floor(u ** popularity_skew * items), u uniform; a larger
    # skew concentrates exposures on the head of the catalogue (a longer tail).
    popularity_skew: float = 2.0
    # Profile column `community` (one value per group): with this probability a user's
    # is their group's own, else drawn uniformly. 0 = the profile says nothing about the
    # group; 1 = it names the group.
    profile_informativeness: float = 0.0
    # Premise users. The last `late_days` days of the log are the window a quality study
    # tests on; before it, a sparse user is seen on one day only (among the
    # `debut_days` days before the late days) with `sparse_user_events` [min, max]
    # exposures, a new user not at all. In the late days both are active as anyone.
    sparse_user_share: float = 0.0
    sparse_user_events: list[int] = field(default_factory=lambda: [1, 3])
    new_user_share: float = 0.0
    late_days: int = 6
    debut_days: int = 7

    def __post_init__(self) -> None:
        for name in ("targeted_share", "profile_informativeness", "sparse_user_share",
                     "new_user_share"):  # fmt: skip
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"generator.{name}: expected a share in [0, 1], got "
                                  f"{getattr(self, name)!r}")  # fmt: skip
        if self.sparse_user_share + self.new_user_share > 1:
            raise ConfigError(
                "generator.sparse_user_share + generator.new_user_share: expected at most 1, "
                f"got {self.sparse_user_share + self.new_user_share}"
            )
        lo_hi = self.sparse_user_events
        if len(lo_hi) != 2 or not 1 <= lo_hi[0] <= lo_hi[1]:
            raise ConfigError(
                f"generator.sparse_user_events: expected [min, max] with 1 <= min <= max, got {lo_hi!r}"
            )
        if self.popularity_skew <= 0:
            raise ConfigError(
                f"generator.popularity_skew: expected > 0, got {self.popularity_skew}"
            )
        if self.sparse_user_share + self.new_user_share > 0 and not (
            self.late_days >= 1 and 1 <= self.debut_days <= self.days - self.late_days
        ):
            raise ConfigError(
                f"generator.late_days ({self.late_days}) and generator.debut_days "
                f"({self.debut_days}): expected both >= 1 and late_days + debut_days <= days "
                f"({self.days})"
            )


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
    epochs: int = 5
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
    # A night continues from the last model (the champion; a baseline: its own last run)
    # on the days since its data date, from its weights and memories; false: every night
    # retrains the whole window (training/incremental.py).
    incremental: bool = True
    # ... except every N days since the chain's last full retrain (0: only when there is
    # no earlier model or `duia train --full` asks).
    full_retrain_every_days: int = 7
    # Start from nothing: no earlier model's weights or cluster memories, the whole window.
    cold_start: bool = False

    def __post_init__(self) -> None:
        for name in ("train_days", "validation_days"):  # the loader has made them ints
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"train.{name}: expected a whole number >= 1, got {getattr(self, name)!r}"
                )
        if self.full_retrain_every_days < 0:
            raise ConfigError(
                "train.full_retrain_every_days: expected a whole number >= 0 (0 = never "
                f"scheduled), got {self.full_retrain_every_days!r}"
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
        """A config path as an absolute one. `load_config` has already anchored each
        relative path where it was written; one set in code resolves against the home."""
        return anchor_path(path, duia_home())

    @property
    def lakehouse_root(self) -> str:
        return self.resolve_path(self.lakehouse.root)

    @property
    def tracking_uri(self) -> str:
        return self.resolve_path(self.mlflow.tracking_uri)

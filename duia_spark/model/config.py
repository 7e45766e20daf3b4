"""ModelConfig: every hyper-parameter and DUIA switch of the ranker, with its default.

These defaults are the shipped ones: `conf/default.yaml` lists the same values and
`docs/model.md`'s switch table the same fields (tests hold all three equal). Fields are
plain int / float / bool / str / list[str] / dict[str, float] so that the YAML loader
(`duia_spark.config`) can check them by type. `docs/model.md` explains each switch and
the reconstruction choices behind it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

VARIANTS = ("ple", "ple+uie", "ple+uie+upbe", "ple+duia")
FUSIONS = ("input", "residual")
# Activity segment ids of the batch contract (`segment`: 0 low, 1 mid, 2 high); the
# tables' segment labels (duia_spark.data.schema) are read from here.
SEGMENT_IDS = {"low": 0, "mid": 1, "high": 2}
DEFAULT_TASKS = ["click", "long_view", "like", "follow", "comment", "share"]
# Switches a saved model_config.json may still carry, with the value at which they
# changed nothing: a model saved with another value cannot be rebuilt by this code.
RETIRED_SWITCHES = {
    "enhanced_tasks": [],
    "enhanced_segments": [],
    "upbe_affinity": False,
    "cluster_outcomes": False,
    "play_time_loss": "mse_log1p",
}


@dataclass
class ModelConfig:
    # --- which model: "ple", "ple+uie", "ple+uie+upbe", "ple+duia" (= UIE + UPBE + UHSE)
    variant: str = "ple+duia"

    # --- tasks and losses
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    # Missing tasks weigh 1.0.
    task_weights: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(DEFAULT_TASKS, 1.0)
    )
    # Tasks listed here (and present in `tasks`) are regressions, not BCE: MSE on
    # log1p(play time), standardised by the target's running mean and std.
    regression_tasks: list[str] = field(default_factory=lambda: ["play_time"])

    # --- vocabularies (index 0 = padding / unknown) and input widths
    embedding_dim: int = 16
    n_users: int = 100_000
    n_items: int = 100_000
    n_categories: int = 1_000
    n_authors: int = 10_000
    n_user_dense: int = 8
    n_item_dense: int = 8
    seq_len: int = 50
    pos_seq_len: int = 20
    embedding_init_std: float = 0.05
    # Side features a source declares (`features.*`; set at train time): hash buckets of
    # each categorical column, in side_cat's order: user, item, context. [] = none.
    user_cat_buckets: list[int] = field(default_factory=list)
    item_cat_buckets: list[int] = field(default_factory=list)
    context_cat_buckets: list[int] = field(default_factory=list)
    side_embedding_dim: int = 8  # width of each side feature's embedding

    # --- PLE (Tang et al., RecSys 2020)
    ple_levels: int = 2
    experts_per_task: int = 1
    shared_experts: int = 2
    expert_hidden: int = 64
    tower_hidden: int = 32
    # Dropout on the hidden units of every expert and tower (training only): without it
    # the ranker memorises the ids of a small log (docs/quality.md, "The base ranker").
    dropout: float = 0.2

    # --- GHCA user memory (arXiv 2405.13238)
    k1: int = 128
    k2: int = 8
    memory_dim: int = 32
    hierarchical: bool = True
    balanced_sampling: bool = True
    # Learning rate rho of the centres (plain SGD on the clustering loss).
    cluster_lr: float = 0.05
    # Every this many training steps, centres whose usage share fell below
    # `dead_centre_min_usage` x (uniform share) are re-seeded from recent queries.
    dead_centre_window: int = 100
    dead_centre_min_usage: float = 0.05
    recent_queries: int = 2048
    # Hidden width of the auxiliary user-interest tower that makes the query q.
    query_tower_hidden: int = 64
    # Share of training rows whose behaviour inputs the query tower does not see, so it
    # learns to place sparse users from their profile (DropoutNet-style).
    query_behaviour_dropout: float = 0.5
    aux_task: str = "click"
    aux_loss_weight: float = 1.0

    # --- UIE / UPBE retrieval
    top_k: int = 4
    similarity_threshold: float = 0.0
    similarity_threshold_enabled: bool = True
    # Softmax temperature over cosine similarities when pooling retrieved centres.
    attention_temperature: float = 0.1
    # UIE and UPBE vectors are linearly mapped to this width before they join the PLE
    # input (0 = concatenate them as they are, as the paper describes).
    enhancement_dim: int = 32
    # Where the UIE/UPBE vectors (and UHSE's enhanced sequence) join the ranker.
    # "residual": the PLE ranker trains as variant "ple" does, without them; a head
    # reads them and adds a residual logit per task, learnt with the base held fixed
    # (duia_spark/model/residual.py), served per segment where it validates better
    # (train.residual_gate). "input": the PLE input, read by every expert and gate, and
    # extra keys of the history attention (the paper's design).
    enhancement_fusion: str = "residual"
    # Labels whose positives write UPBE's slots.
    positive_behaviours: list[str] = field(
        default_factory=lambda: ["long_view", "like", "share", "follow"]
    )

    # --- UHSE item memory. Its K1*K2 centres are the extra keys of the history
    # attention, scored and pooled by two [B, K1*K2] products: the step cost grows with it.
    item_k1: int = 64
    item_k2: int = 8

    # --- reproducibility and deferred (meta-device) init
    seed: int = 0
    # Embedding tables with at least this many rows are built on the meta device and
    # materialised once, in place, on the target device.
    meta_init_min_rows: int = 1_000_000

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"model.variant: expected one of {VARIANTS}, got {self.variant!r}")
        if not self.tasks:
            raise ValueError("model.tasks: at least one task is required")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"model.tasks: duplicate task names in {self.tasks}")
        for name in ("k1", "k2", "memory_dim", "top_k", "item_k1", "item_k2", "ple_levels"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name}: must be >= 1")
        if not 0.0 <= self.query_behaviour_dropout < 1.0:
            raise ValueError("model.query_behaviour_dropout: must be in [0, 1)")
        if self.enhancement_fusion not in FUSIONS:
            raise ValueError(
                f"model.enhancement_fusion: expected one of {FUSIONS}, "
                f"got {self.enhancement_fusion!r}"
            )
        if self.enhancement_dim < 0:
            raise ValueError("model.enhancement_dim: must be >= 0 (0 = no projection)")
        if any(n < 2 for n in self.side_cat_buckets):
            raise ValueError("features.*_categorical: every column needs at least 2 buckets")
        for name in ("n_users", "n_items", "n_categories", "n_authors"):
            if getattr(self, name) < 2:
                raise ValueError(f"model.{name}: vocabulary needs index 0 plus at least one id")

    @property
    def side_cat_buckets(self) -> list[int]:
        return [*self.user_cat_buckets, *self.item_cat_buckets, *self.context_cat_buckets]

    # Derived switches: the variant names which DUIA parts exist.
    @property
    def use_uie(self) -> bool:
        return self.variant != "ple"

    @property
    def use_upbe(self) -> bool:
        return self.variant in ("ple+uie+upbe", "ple+duia")

    @property
    def use_uhse(self) -> bool:
        return self.variant == "ple+duia"

    @property
    def use_residual(self) -> bool:
        """A DUIA variant with residual fusion: a head on top of a base PLE ranker."""
        return self.use_uie and self.enhancement_fusion == "residual"

    def task_weight(self, task: str) -> float:
        return float(self.task_weights.get(task, 1.0))

    def is_regression(self, task: str) -> bool:
        return task in self.regression_tasks

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """A saved config (model_config.json). Keys this code does not know are left out,
        unless they are retired switches set to change the model: that model cannot be
        rebuilt as it was trained, and scoring it as something else would be silent."""
        # Saved before enhancement_fusion existed: the vectors joined the PLE input.
        data = {"enhancement_fusion": "input", **data}
        changed = [
            k for k, off in RETIRED_SWITCHES.items() if k in data and data[k] not in (off, None)
        ]
        if data["enhancement_fusion"] not in FUSIONS:
            changed.append("enhancement_fusion")
        if changed:
            raise ValueError(
                "this model was trained with switches this release no longer has: "
                + ", ".join(f"model.{k}={data[k]!r}" for k in changed)
            )
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

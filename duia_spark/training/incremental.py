"""Which days a night trains on: the days since the model it continues from, or the window.

A nightly ranker continues from its last model: the night dated D starts from the weights,
cluster memories and residual head of the model it follows (the champion, or for a
baseline its own last run) and trains on the days that model has not trained on — one
day in a normal night. It trains on the whole `train.train_days` window instead (a full
retrain) when there is no earlier model, when asked (`--full`), when `train.incremental`
is off, when the earlier model is dated D or later, when its days fill the window anyway,
or when the chain's last full retrain is `train.full_retrain_every_days` days old or more.

A model dated D0 trained on the days before its validation window and validated on
[D0 - validation_days + 1, D0]; the next night continues with exactly those validation
days and the days after them, so every day is trained on once in the chain.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

from duia_spark.training.split import TemporalSplit, temporal_split

FULL, INCREMENTAL = "full", "incremental"


@dataclass(frozen=True)
class EarlierModel:
    """A model a night can continue from."""

    label: str  # how logs name it: "version 3", "run 1a2b3c4d"
    uri: str  # models:/<name>/<version> or runs:/<run id>/model
    data_date: dt.date
    last_full_retrain: dt.date  # the full retrain its chain started from
    version: str | None = None  # the registered version, when it is one
    trained_at: dt.datetime | None = None  # when its run started (UTC)
    run_id: str | None = None  # its MLflow run (the optimizer's state is logged there)


@dataclass(frozen=True)
class TrainingPlan:
    mode: str  # FULL or INCREMENTAL
    split: TemporalSplit
    start: EarlierModel | None  # what the night continues from (incremental only)
    reason: str  # one line: why this mode

    @property
    def incremental(self) -> bool:
        return self.mode == INCREMENTAL

    @property
    def last_full_retrain(self) -> dt.date:
        """The chain's last full retrain after this night (tagged on the run)."""
        return self.start.last_full_retrain if self.incremental else self.split.validation_last

    def describe(self) -> str:
        return f"{self.mode} training on {self.split.describe_training()}: {self.reason}"


def plan_training(
    day: dt.date,
    train_days: int,
    validation_days: int,
    earlier: EarlierModel | None,
    *,
    incremental: bool = True,
    full_requested: bool = False,
    full_retrain_every_days: int = 0,
    rebuilt_from: dt.date | None = None,
) -> TrainingPlan:
    """The night D's training days and the model it starts from (module docstring).
    `rebuilt_from`: the earliest day rebuilt since the earlier model trained (a late or
    corrected drop, ops.stale_days): an incremental night trains on it and the days
    after it again."""
    window = temporal_split(day, train_days, validation_days)

    def full(reason: str) -> TrainingPlan:
        return TrainingPlan(FULL, window, None, reason)

    if full_requested:
        return full("asked for (--full)")
    if not incremental:
        return full("train.incremental is off")
    if earlier is None:
        return full("no earlier model of this variant to continue from")
    if earlier.data_date >= day:
        return full(
            f"the last model ({earlier.label}) is dated {earlier.data_date}, not before {day}"
        )
    age = (day - earlier.last_full_retrain).days
    if full_retrain_every_days and age >= full_retrain_every_days:
        return full(
            f"the last full retrain was on {earlier.last_full_retrain}, {age} days ago "
            f"(train.full_retrain_every_days: {full_retrain_every_days})"
        )
    first_new = earlier.data_date - dt.timedelta(days=validation_days - 1)
    rebuilt = rebuilt_from is not None and rebuilt_from < first_new
    if rebuilt:
        first_new = rebuilt_from
    if first_new <= window.train_first:
        return full(
            f"the last model ({earlier.label}, {earlier.data_date}) is older than the window"
        )
    split = dataclasses.replace(window, train_first=first_new)
    days = (split.train_last - split.train_first).days + 1
    new = "the day" if days == 1 else f"the {days} days"
    reason = f"continues {earlier.label} (data date {earlier.data_date}) on {new} since"
    if rebuilt:
        reason = (
            f"continues {earlier.label} (data date {earlier.data_date}) on the days since "
            f"and the days from {rebuilt_from} rebuilt after a late drop"
        )
    return TrainingPlan(INCREMENTAL, split, earlier, reason)

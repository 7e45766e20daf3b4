"""The temporal split of a run dated D: the days that train, and the days that validate.

The validation window is the last `validation_days` days up to and including D; the
`train_days` days before it train. With one validation day (the default) that is the
classic split: train on [D - train_days, D), validate on D. A longer window takes
day-to-day noise out of everything decided on validation rows: the epoch that is kept,
the residual gate, and the evaluate stage's comparison with the champion and the
baselines, which scores the same window.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


@dataclass(frozen=True)
class TemporalSplit:
    train_first: dt.date
    train_last: dt.date
    validation_first: dt.date
    validation_last: dt.date  # D, the run's date

    @property
    def validation_days(self) -> int:
        return (self.validation_last - self.validation_first).days + 1

    def training_rows(self, samples: DataFrame) -> DataFrame:
        """The samples of the training days."""
        return samples.where(F.col("sample_date").between(self.train_first, self.train_last))

    def validation_rows(self, samples: DataFrame) -> DataFrame:
        """The samples of the validation days."""
        return samples.where(
            F.col("sample_date").between(self.validation_first, self.validation_last)
        )

    def describe_training(self) -> str:
        return _describe(self.train_first, self.train_last)

    def describe_validation(self) -> str:
        return _describe(self.validation_first, self.validation_last)

    def no_samples_message(self, window: str) -> str:
        """What to tell a user when the `window` ("training" or "validation") has no
        samples: which dates, and the stage that makes them."""
        if window == "training":
            dates, days = self.describe_training(), (self.train_last - self.train_first).days + 1
        elif window == "validation":
            dates, days = self.describe_validation(), self.validation_days
        else:
            raise ValueError(f"window: expected 'training' or 'validation', got {window!r}")
        which = "that date" if days == 1 else "those dates"
        return f"no {window} samples for {dates}: run `duia samples` for {which}"


def _describe(first: dt.date, last: dt.date) -> str:
    return str(first) if first == last else f"{first}..{last}"


def temporal_split(day: dt.date, train_days: int, validation_days: int = 1) -> TemporalSplit:
    """The split of a run dated `day` (see the module's docstring); both counts come
    from TrainConfig, which refuses anything below 1."""
    validation_first = day - dt.timedelta(days=validation_days - 1)
    train_last = validation_first - dt.timedelta(days=1)
    return TemporalSplit(
        train_first=train_last - dt.timedelta(days=train_days - 1),
        train_last=train_last,
        validation_first=validation_first,
        validation_last=day,
    )

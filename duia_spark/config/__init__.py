"""Typed configuration: `conf/default.yaml` + optional override file + `--set key=value`.

Every section is a dataclass; loading walks the YAML against the dataclass fields,
so an unknown key or a value of the wrong type fails at start-up with the key's
dotted name, not an hour later inside a Spark job.

Relative paths resolve where they were written: in a shipped config (the `conf/`
folder, package data of the wheel) against the home, `$DUIA_HOME` or else the current
directory; in another config file against that file's folder; in a `--set` override
or a command-line flag against the current directory.
"""

from __future__ import annotations

from duia_spark.config.loader import (  # noqa: F401
    config_as_flat_dict,
    find_conf_file,
    load_config,
)
from duia_spark.config.paths import (  # noqa: F401
    DEFAULT_CONF,
    HOME_ENV,
    PATH_KEYS,
    SOURCE_CHECKOUT,
    SQLITE,
    anchor_path,
    duia_home,
    shipped_conf_dir,
)
from duia_spark.config.sections import (  # noqa: F401
    ActivityConfig,
    Config,
    ConfigError,
    EvaluateConfig,
    FeaturesConfig,
    GeneratorConfig,
    IngestConfig,
    ItemStatsConfig,
    LakehouseConfig,
    MlflowConfig,
    OpsConfig,
    ScoreConfig,
    SequenceConfig,
    SparkConfig,
    TablesConfig,
    TrainConfig,
)

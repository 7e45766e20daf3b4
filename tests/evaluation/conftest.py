from tiny_lake import *  # noqa: F403  (fixtures train_cfg, tiny_lake and their helpers)
from tiny_lake import tiny_lake, train_cfg  # noqa: F401

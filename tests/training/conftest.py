from tiny_lake import *  # noqa: F403  (fixtures train_cfg, tiny_lake and their helpers)
from tiny_lake import tiny_lake, train_cfg  # noqa: F401
from tiny_model import make_batch, make_config  # noqa: F401  (fixtures)

"""PLE multi-task ranker with DUIA (Dynamic User Interest Augmentation), pure PyTorch.

One idea per module: `config` (ModelConfig), `layers` (building blocks), `ple` (PLE),
`ghca` (ClusterMemory), `duia` (UIE, UPBE, UHSE), `base` (embeddings, history
attention, PLE: the base ranker), `enhancement` (DUIA over the memories -> its vectors),
`residual` (the residual head), `losses` (task losses, play-time scaling),
`deferred_init` (meta-device tables), `optim` (Adam + SGD-for-centres), `ranker`
(DuiaRanker, build_ranker: the parts composed).
No Spark here. See docs/model.md.
"""

from duia_spark.model.config import VARIANTS, ModelConfig
from duia_spark.model.ghca import ClusterMemory, Retrieval
from duia_spark.model.ranker import DuiaRanker, build_ranker

__all__ = ["VARIANTS", "ClusterMemory", "DuiaRanker", "ModelConfig", "Retrieval", "build_ranker"]

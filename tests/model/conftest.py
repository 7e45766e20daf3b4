from tiny_model import make_batch, make_config, single_thread_torch  # noqa: F401  (fixtures)

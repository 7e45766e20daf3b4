from nightly_world import nightly_world  # noqa: F401  (session fixture)

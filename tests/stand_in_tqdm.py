"""A stand-in for tqdm, for tests that check MLflow draws no progress bar: MLflow draws
its bar with whichever tqdm it can import, and the dev environment has none."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

STAND_IN_TQDM = textwrap.dedent(
    """
    import sys


    class tqdm:
        def __init__(self, total=None, desc="", **kw):
            self.desc = desc
            print(f"{desc}: 0/{total}", file=sys.stderr)

        def update(self, n=1):
            pass

        def refresh(self):
            print(f"{self.desc}: ...", file=sys.stderr)

        def close(self):
            pass
    """
)


def stand_in_tqdm(folder: Path) -> dict[str, str]:
    """PYTHONPATH with a tqdm that prints like the real one, if tqdm is not installed."""
    try:
        import tqdm  # noqa: F401

        return {}
    except ImportError:
        (folder / "tqdm").mkdir(parents=True)
        (folder / "tqdm" / "__init__.py").write_text(STAND_IN_TQDM)
        (folder / "tqdm" / "auto.py").write_text("from tqdm import tqdm  # noqa: F401\n")
        path = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
        return {"PYTHONPATH": path}

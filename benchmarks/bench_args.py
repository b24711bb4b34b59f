"""The command-line start every benchmark script shares: its description and where the data is."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

#: ../shared/data beside the checkout, where this project's machines keep the data sets.
SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def benchmark_parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by the first line of ``doc``, with ``--data-dir``."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("IGBENCH_DATA_DIR", str(SHARED_DATA)),
                   help="folder holding mnist/ (default: $IGBENCH_DATA_DIR or ../shared/data)")
    return p

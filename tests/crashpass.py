"""A pass that dies at a checkpoint, like a worker killed mid-pass (crash tests run it as a real process).

python tests/crashpass.py CONFIG CHECKPOINT [SECONDS] → exit status 70 when the pass reached that checkpoint;
SECONDS moves the pass's clock that far ahead (a crash "later", without waiting for it).
"""
from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta, timezone

from pipeline.config import load_config
from pipeline.context import Context
from pipeline.worker.mailpass import CHECKPOINTS, run_pass


def main() -> int:
    cfg_path, point = sys.argv[1], sys.argv[2]
    ahead = timedelta(seconds=float(sys.argv[3])) if len(sys.argv) > 3 else timedelta(0)
    assert point in CHECKPOINTS, point

    def checkpoint(name: str) -> None:
        if name == point:
            os._exit(70)

    run_pass(Context(load_config(cfg_path)), checkpoint=checkpoint,
             clock=lambda: datetime.now(timezone.utc) + ahead)
    return 0


if __name__ == "__main__":
    sys.exit(main())

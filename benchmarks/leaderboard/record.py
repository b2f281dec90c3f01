"""Copy the leaderboard of benchmarks/leaderboard/_work/compare here, with the machine record.

    .venv/bin/python -m benchmarks.leaderboard.record    # run.sh calls this last
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from benchmarks.common import write_results

HERE = Path(__file__).parent
WORK = HERE / "_work" / "compare"


def main() -> None:
    board = json.loads((WORK / "leaderboard.json").read_text())
    commands = {row["model"]: " ".join(json.loads(
        (Path(row["run"]) / "config.json").read_text())["command"]) for row in board["rows"]}
    write_results(HERE / "leaderboard.json", {
        "benchmark": "seqlab compare on tinyshakespeare, equal time budget",
        "training_commands": commands, **board})
    for name in ("leaderboard.md", "learning_curves.png"):
        shutil.copy(WORK / name, HERE / name)
    print((HERE / "leaderboard.md").read_text())


if __name__ == "__main__":
    main()

"""What the shipped models' training runs did, read from their event logs.

    .venv/bin/python benchmarks/training_logs.py [LOG ...]

Reads the gzipped JSON-lines event logs `make models` keeps (docs/training-logs/*.jsonl.gz
by default) and prints, per run: optimizer steps, passes over the data, and each loss
averaged over the first and the last 100 steps (single steps are too noisy to compare).

A log may hold several processes of one run, each resumed from the last one's checkpoint;
the steps an interrupted process made after its last checkpoint are replaced by the
resumed ones. Training time, summed over the processes, is in each model's own record
(`nodeflow models` shows it).
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

LOGS = Path(__file__).parent.parent / "docs" / "training-logs"
WINDOW = 100


def summary(path: Path) -> dict:
    steps: list[dict] = []
    finished = False
    with gzip.open(path, "rt") as lines:
        for line in lines:
            event = json.loads(line)
            if event.get("node") != "train":
                continue
            if event["event"] == "NodeProgress" and "resumed" in event["info"]:
                steps = [row for row in steps if row["done"] <= event["info"]["resumed"]]
            elif event["event"] == "NodeProgress" and event["done"]:
                steps.append({"done": event["done"], **event["info"]})
            elif event["event"] == "NodeFinished":
                finished = True
    if not steps or not finished:
        raise SystemExit(f"{path}: no finished training run in this log")
    losses = [k for k, v in steps[-1].items() if isinstance(v, float) and k not in {"lr"}]

    def mean(rows: list[dict], key: str) -> float:
        return sum(row[key] for row in rows) / len(rows)

    return {
        "run": path.name.removesuffix(".jsonl.gz"),
        "steps": steps[-1]["done"],
        "epochs": steps[-1].get("epoch"),
        "losses": {key: (mean(steps[:WINDOW], key), mean(steps[-WINDOW:], key)) for key in losses},
    }


def main() -> int:
    paths = [Path(p) for p in sys.argv[1:]] or sorted(LOGS.glob("*.jsonl.gz"))
    if not paths:
        raise SystemExit(f"no logs given and none in {LOGS}; `make models` writes them")
    for path in paths:
        run = summary(path)
        losses = ", ".join(
            f"{key} {first:.4g} -> {last:.4g}" for key, (first, last) in run["losses"].items()
        )
        print(f"{run['run']:<12} {run['steps']:>6} steps  {run['epochs']:>5} passes  {losses}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Engine overhead: per-node cost of a 1,000-node chain, its validation time, and a cached
re-run of the PCA graph as a fraction of its first run.

    .venv/bin/python benchmarks/engine_overhead.py

Targets (issue 2): at most 50 us per node, validation at most 100 ms, cached re-run at most 1%.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
os.environ["NODEFLOW_PLUGIN_PATH"] = str(HERE / "plugins")
os.environ.setdefault("NODEFLOW_CACHE_DIR", tempfile.mkdtemp(prefix="nodeflow-bench-"))

from nodeflow.engine.cache import Cache  # noqa: E402
from nodeflow.engine.executor import Executor  # noqa: E402
from nodeflow.graph import Graph, Link, NodeSpec  # noqa: E402
from nodeflow.plugins import load_registry  # noqa: E402

CHAIN = 1000
REPEATS = 5


def chain_graph(length: int) -> Graph:
    graph = Graph()
    graph.nodes["n0"] = NodeSpec("n0", "bench_nodes.const", {"value": 0})
    for i in range(1, length):
        graph.nodes[f"n{i}"] = NodeSpec(
            f"n{i}", "bench_nodes.inc", {"step": 1}, {"value": Link(f"n{i - 1}", "value")}
        )
    return graph


def best_of(fn, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> int:
    registry = load_registry()
    graph = chain_graph(CHAIN)

    validate_s = best_of(lambda: graph.validate(registry))

    def run_chain() -> None:
        result = Executor(registry, Cache(enabled=False), device="cpu").run(
            graph, targets=[f"n{CHAIN - 1}"]
        )
        assert result.outputs[f"n{CHAIN - 1}"]["value"] == CHAIN - 1

    run_s = best_of(run_chain)
    per_node_us = (run_s - validate_s) / CHAIN * 1e6

    pca = Graph.load(HERE.parent / "graphs" / "pca_eigenimages.toml")
    executor = Executor(
        registry, Cache(Path(tempfile.mkdtemp(prefix="nodeflow-pca-"))), device="cpu"
    )
    began = time.perf_counter()
    first = executor.run(pca)
    first_s = time.perf_counter() - began
    assert first.ok, first.failed
    rerun_s = statistics.median(
        [best_of(lambda: executor.run(pca), repeats=1) for _ in range(REPEATS)]
    )

    rows = [
        ("per-node overhead, 1,000-node chain", f"{per_node_us:.1f} us", "<= 50 us"),
        ("validation of that graph", f"{validate_s * 1e3:.1f} ms", "<= 100 ms"),
        ("PCA graph, first run", f"{first_s:.2f} s", ""),
        ("PCA graph, cached re-run", f"{rerun_s * 1e3:.1f} ms", ""),
        ("cached re-run / first run", f"{rerun_s / first_s:.2%}", "<= 1%"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>10}  {target}")
    ok = per_node_us <= 50 and validate_s <= 0.1 and rerun_s / first_s <= 0.01
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

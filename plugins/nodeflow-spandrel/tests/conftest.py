"""nodeflow's pytest fixtures for plugin tests: `run_graph(text)` and `nodeflow_registry`."""

from nodeflow.testing import nodeflow_registry, run_graph  # noqa: F401 (fixtures)

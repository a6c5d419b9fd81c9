"""nodeflow's built-in nodes, each module a plugin registered like any third-party one."""

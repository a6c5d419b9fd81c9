"""`nodeflow edit`: the Textual terminal UI (see docs/tui.md). Start it with `NodeflowApp`."""

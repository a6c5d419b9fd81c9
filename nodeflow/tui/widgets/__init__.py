"""The main screen's widgets, one module per area: node list, graph view, inspector,
problems, run panel and log, image preview, footer."""

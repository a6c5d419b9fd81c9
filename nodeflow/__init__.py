"""nodeflow: plugin-based image-synthesis node graphs for PyTorch."""

__version__ = "0.1.0"

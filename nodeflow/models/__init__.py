"""Model architectures, the `Model` value, and checkpoint I/O."""

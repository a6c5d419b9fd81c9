"""Registers the built-in socket types (Image, Mask, Latent, Model, PCABasis, ...)."""

from collections.abc import Callable
from typing import Any

from nodeflow.api import hookimpl
from nodeflow.types import BUILTIN_TYPES


@hookimpl
def register_types(register: Callable[[Any], None]) -> None:
    for socket_type in BUILTIN_TYPES:
        register(socket_type)

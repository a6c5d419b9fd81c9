"""nodeflow-spandrel: community checkpoints (ESRGAN, SwinIR, SCUNet, ...) load in nodeflow.

Registers one fallback architecture, `spandrel.community`: when no other architecture
claims a checkpoint's tensors, spandrel's detection is asked (its permissively licensed
architectures only, unless the user opts in to spandrel_extra_arches). The file is still
read by nodeflow's own weights-only reader; spandrel only sees the tensors. spandrel
itself is imported the first time a file needs it, never when plugins load.
"""

from collections.abc import Callable
from typing import Any

from nodeflow.api import Architecture, hookimpl
from nodeflow_spandrel import community

__version__ = "0.1.0"

ARCHITECTURE = Architecture(
    community.ARCH_ID,
    community.detect,
    community.build,
    "community restoration and upscaling checkpoints detected by spandrel (ESRGAN, "
    "Real-ESRGAN Compact, SwinIR, HAT, DAT, SPAN, SCUNet, DnCNN, NAFNet, ...); architectures "
    f"under restrictive licences (spandrel_extra_arches) only with {community.EXTRA_ARCHES_ENV}=1",
    fallback=True,
)


@hookimpl
def register_architectures(register: Callable[[Any], None]) -> None:
    register(ARCHITECTURE)

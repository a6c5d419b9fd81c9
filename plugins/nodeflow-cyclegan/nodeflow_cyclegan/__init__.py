"""nodeflow-cyclegan: unpaired image-to-image translation (CycleGAN) as nodeflow nodes.

`cyclegan.train` learns generators A -> B and B -> A from two unpaired image streams;
`cyclegan.translate` runs either one. The generators are nodeflow's `resnet_generator`
architecture and the discriminators its `patchgan`, so trained models save, load and run
with the built-in model nodes too.
"""

from collections.abc import Callable
from typing import Any

from nodeflow.api import hookimpl
from nodeflow_cyclegan.nodes import train, translate

__version__ = "0.1.0"


@hookimpl
def register_nodes(register: Callable[[Any], None]) -> None:
    register(train)
    register(translate)

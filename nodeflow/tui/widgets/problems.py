"""The problems panel: what validation finds wrong with the graph, updated after each edit."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from nodeflow.graph import Problem
from nodeflow.tui.messages import NodeSelected
from nodeflow.tui.widgets.node_list import component_color


class ProblemList(OptionList):
    """One entry per problem, wrapped to the panel; choosing one selects the node at fault."""

    COMPONENT_CLASSES: ClassVar[set[str]] = OptionList.COMPONENT_CLASSES | {"problem-list--where"}

    DEFAULT_CSS = """
    ProblemList {
        height: 1fr;
        border: none;
        & > .problem-list--where { color: $text-error; text-style: bold; }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.problems: list[Problem] = []

    def show_problems(self, problems: list[Problem]) -> None:
        self.problems = problems
        highlighted = self.highlighted
        self.clear_options()
        if not problems:
            self.add_option(Option("No problems: the graph is ready to run.", disabled=True))
            return
        where_style = component_color(self, "problem-list--where")
        options = []
        for index, problem in enumerate(problems):
            where = problem.where() or "graph"
            prompt = Text.assemble((where, where_style), ": ", problem.message)
            options.append(Option(prompt, id=str(index)))
        self.add_options(options)
        self.highlighted = min(highlighted or 0, len(problems) - 1)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is None:
            return
        problem = self.problems[int(event.option.id)]
        if problem.node:
            self.post_message(NodeSelected(problem.node))

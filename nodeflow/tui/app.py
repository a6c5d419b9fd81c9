"""`nodeflow edit`: the Textual app and its main screen.

The app holds the session: the registry, the document being edited (with undo), and one
`Executor` whose memory cache every run reuses. The main screen holds the panels (node
list, graph view, inspector; problems, log and run below) and turns what the person asks
for into document edits, runs and previews. Runs and previews work in threads; their
events come back as messages. The app uses the engine's public API only.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Static, TabbedContent, TabPane

import nodeflow.tui.status as run_status
from nodeflow.engine import CancelToken, Event, Executor, NodeProgress, RunResult, RunStarted
from nodeflow.graph import FileChangedError, Graph, GraphFileError, Problem
from nodeflow.node import NodeType
from nodeflow.plugins import load_registry
from nodeflow.registry import Registry
from nodeflow.tui.commands import ChangeTypeCommands, NodeTypeCommands
from nodeflow.tui.document import (
    AddNode,
    DeleteNode,
    Document,
    Edit,
    RenameNode,
    SetComment,
    SetInput,
    SetParam,
)
from nodeflow.tui.layout import layout_graph
from nodeflow.tui.messages import (
    InputLinked,
    NodeSelected,
    ParamEdited,
    PreviewReady,
    RunEnded,
    RunEventPosted,
)
from nodeflow.tui.panels import BORDERS, panel_widths
from nodeflow.tui.previews import PreviewImages, fetch_images, image_outputs, no_image_reason
from nodeflow.tui.screens.choice import ChoiceScreen
from nodeflow.tui.screens.confirm_quit import ConfirmQuitScreen
from nodeflow.tui.screens.help import HelpScreen
from nodeflow.tui.screens.preview import PreviewScreen
from nodeflow.tui.screens.prompt import PromptScreen
from nodeflow.tui.settings import load_settings, save_setting
from nodeflow.tui.status import RunBoard, State
from nodeflow.tui.widgets.footer import KeyFooter
from nodeflow.tui.widgets.graph_view import GraphView
from nodeflow.tui.widgets.inspector import Inspector, LinkField
from nodeflow.tui.widgets.node_list import NodeList
from nodeflow.tui.widgets.preview import ImagePreview
from nodeflow.tui.widgets.problems import ProblemList
from nodeflow.tui.widgets.run_panel import RunLog, RunPanel

_DISCONNECT = object()
PANEL_KEYS = {
    "nodes": "node list",
    "graph": "graph",
    "inspector": "inspector",
    "tab-problems": "problems",
    "tab-log": "log",
    "tab-run": "run panel",
}
"""What the number keys 1 to 6 go to."""
FOOTER_RANKING = (
    "help",
    "add",
    "run",
    "connect",
    "toggle_graph",
    "delete",
    "undo",
    "save",
    "quit",
    "edit",
    "cancel_run",
    "view",
    "redo",
    "rename",
    "run_to_here",
    "disconnect",
    "duplicate",
    "change_type",
    "comment",
    "save_as",
    "page(-1)",
    "pin",
)
"""The keys the one-row footer keeps, most wanted first: at 80 columns the first nine fit,
at 120 the first fourteen; the help screen lists them all."""


def open_graph(path: str | Path | None) -> tuple[Graph, list[Problem]]:
    """The graph at `path` (a new one if there is no such file) and problems reading it.

    A file whose rest is well formed opens without its broken parts, which are returned as
    problems; a file that cannot be read at all raises `GraphFileError`.
    """
    if path is None:
        return Graph(), []
    path = Path(path)
    if not path.exists():
        return Graph(path=path), []
    try:
        return Graph.load(path), []
    except GraphFileError as exc:
        if exc.graph is None:
            raise
        return exc.graph, exc.problems


class MainScreen(Screen):
    """The editor: panels, bindings, and the glue between them and the document."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "add", "add", tooltip="add a node: search every node type"),
        Binding("d", "delete", "delete", tooltip="delete the selected node"),
        Binding("n", "rename", "rename", tooltip="rename the selected node"),
        Binding("D", "duplicate", "copy", tooltip="duplicate the selected node"),
        Binding("t", "change_type", "type", tooltip="change the selected node's type in place"),
        Binding(
            "number_sign",
            "comment",
            "note",
            tooltip="write a comment on the node (saved in the file)",
        ),
        Binding("c", "connect", "link", tooltip="choose the output that feeds an input"),
        Binding("C", "disconnect", "unlink", tooltip="disconnect an input"),
        Binding("e", "edit", "edit", tooltip="edit the selected node's fields"),
        Binding("r", "run", "run", tooltip="run the graph (what its output nodes need)"),
        Binding("R", "run_to_here", "run to", tooltip="run up to the selected node"),
        Binding("x", "cancel_run", "stop", tooltip="cancel the run"),
        Binding("u,ctrl+z", "undo", "undo", tooltip="undo the last edit"),
        Binding("ctrl+r,ctrl+y", "redo", "redo", tooltip="redo what was undone"),
        Binding("ctrl+s", "save", "save", tooltip="save the graph file"),
        Binding("S", "save_as", "save as", tooltip="save under another name (.toml or .json)"),
        Binding(
            "g", "toggle_graph", "graph", tooltip="the graph in place of the node list, or back"
        ),
        Binding("v", "view", "view", tooltip="view the selected node's image full screen"),
        Binding(
            "left_square_bracket", "page(-1)", "image", tooltip="the previous image of the batch"
        ),
        Binding(
            "right_square_bracket", "page(1)", tooltip="the next image of the batch", show=False
        ),
        Binding("b", "pin", "A/B", tooltip="pin this image as A; v then shows A beside B"),
        Binding("question_mark", "help", "help", tooltip="every key, and what each panel is for"),
        Binding("escape", "focus_nodes", tooltip="back to the node list", show=False),
        *[
            Binding(
                str(number), f"focus_panel('{panel}')", tooltip=f"go to the {label}", show=False
            )
            for number, (panel, label) in enumerate(PANEL_KEYS.items(), start=1)
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.board = RunBoard()
        self.selected: str | None = None
        self.outputs: dict[str, dict[str, Any]] = {}
        self.previews: dict[str, Any] = {}
        self.run_number = 0
        self.cancel_token: CancelToken | None = None
        self.exit_after_run = False
        self.graph_mode = False
        """`g`: the graph takes the node list's place."""
        self.stale_during_run: set[str] = set()
        self.preview_number = 0
        self.shown_sample: str | None = None
        self.fetched: dict[str, PreviewImages] = {}
        """Preview images by node, so moving the selection pulls no batch twice."""
        self.loading: set[str] = set()
        self.edited_since_run: set[str] = set()
        """Nodes with results an edit has since made stale."""
        self.page = 0
        """Which image of the selected node's batch the preview shows."""
        self.pinned: tuple[str, Any, str] | None = None
        """The node, image and caption pinned as A for an A/B comparison."""

    @property
    def doc(self) -> Document:
        return self.app.doc  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        with Horizontal(id="topbar"):
            yield Static("", id="topbar-file")
            yield Static("", id="topbar-run")
        with Horizontal(id="main"):
            yield NodeList(id="nodes")
            yield GraphView(id="graph")
            yield Inspector(id="inspector")
        with TabbedContent(id="bottom"):
            with TabPane("Problems", id="tab-problems"):
                yield ProblemList(id="problems")
            with TabPane("Log", id="tab-log"):
                yield RunLog(id="log")
            with TabPane("Run", id="tab-run"):
                yield RunPanel(id="run")
        yield KeyFooter(FOOTER_RANKING)

    def on_mount(self) -> None:
        order = self.doc.execution_order()
        self.selected = order[0] if order else None
        self.refresh_document()
        self.query_one(NodeList).focus()
        log = self.query_one(RunLog)
        for problem in self.app.file_problems:  # type: ignore[attr-defined]
            log.log_text(f"left out of the file: {problem.format()}", "warning")
        if self.app.file_problems:  # type: ignore[attr-defined]
            self.notify("Parts of the file could not be read; see the log.", severity="warning")

    # -- showing the document ---------------------------------------------------------------

    def _types(self) -> dict[str, str]:
        return {node_id: spec.type for node_id, spec in self.doc.graph.nodes.items()}

    def refresh_document(self, touched: set[str] | None = None, force: bool = False) -> None:
        """Redraw everything that depends on the graph; forget results an edit made stale.

        `force`: the inspector's fields show the document's values even where one is being
        typed in (after an undo or a redo).
        """
        if touched:
            stale = self.doc.downstream(touched) | (touched - set(self.doc.graph.nodes))
            self.edited_since_run |= {n for n in stale if self.board.get(n).state != State.IDLE}
            self.board.forget(stale)
            for node_id in stale:
                for table in (self.outputs, self.previews, self.fetched):
                    table.pop(node_id, None)
            if self.board.running:
                self.stale_during_run |= stale
        if self.selected not in self.doc.graph.nodes:
            order = self.doc.execution_order()
            self.selected = order[0] if order else None
        types = self._types()
        self.query_one(NodeList).show_nodes(self.doc.execution_order(), types, self.board)
        self.query_one(GraphView).show_graph(layout_graph(self.doc.graph), types, self.board)
        self.fit_panels()
        problems = self.doc.problems()
        self.query_one(ProblemList).show_problems(problems)
        tab = self.query_one(TabbedContent).get_tab("tab-problems")
        tab.label = f"Problems ({len(problems)})"
        self._show_selection(force)
        self.refresh_title()

    def refresh_title(self) -> None:
        """The top line: the file and whether it is saved; on the right, the run and device."""
        doc = self.doc
        name = str(doc.path) if doc.path else "new graph (not saved yet)"
        left = f"[b]nodeflow[/b]  {escape(name)}"
        if doc.dirty:
            left += "  [$text-warning]\\[modified][/]"
        self.query_one("#topbar-file", Static).update(left)
        right = ""
        if self.board.running and self.cancel_token is not None and self.cancel_token.cancelled:
            right = "[$text-warning]stopping the run…[/]"
        elif self.board.running:
            right = "[$text-accent]running… x cancels[/]"
        device = self.app.device_name  # type: ignore[attr-defined]
        if device:
            right += f"  [$text-muted]{escape(device)}[/]"
        self.query_one("#topbar-run", Static).update(right.strip())

    def _show_selection(self, force: bool = False) -> None:
        self.query_one(NodeList).show_selection(self.selected)
        self.query_one(GraphView).show_selection(self.selected)
        self.query_one(Inspector).show_node(self.doc, self.selected, force)
        self._show_output()

    def select(self, node_id: str | None) -> None:
        if node_id == self.selected or (node_id and node_id not in self.doc.graph.nodes):
            return
        self.selected = node_id
        self.shown_sample = None
        self.page = 0
        self._show_selection()

    @on(NodeSelected)
    def _node_selected(self, message: NodeSelected) -> None:
        message.stop()
        self.select(message.node_id)

    # -- editing ----------------------------------------------------------------------------

    def apply(self, edit: Edit, merge: bool = False) -> None:
        self.doc.apply(edit, merge=merge)
        self.refresh_document(edit.touched())

    @on(ParamEdited)
    def _param_edited(self, message: ParamEdited) -> None:
        message.stop()
        self.apply(SetParam(message.node_id, message.name, message.value), merge=True)

    @on(InputLinked)
    def _input_linked(self, message: InputLinked) -> None:
        message.stop()
        label = "link input" if message.link else "unlink input"
        self.apply(SetInput(message.node_id, message.name, message.link, label=label))

    def add_node(self, type_id: str) -> None:
        spec = self.doc.new_node(type_id, after=self.selected)
        self.selected = spec.id
        self.apply(AddNode(spec, label=f"add {spec.id}"))
        linked = ", ".join(f"{name} ← {link}" for name, link in spec.inputs.items())
        self.notify(f"Added {spec.id} ({type_id})" + (f"; linked {linked}" if linked else ""))

    def action_add(self) -> None:
        from textual.command import CommandPalette

        self.app.push_screen(
            CommandPalette(providers=[NodeTypeCommands], placeholder="Add a node: type to search…")
        )

    def action_delete(self) -> None:
        if self._need_selection("delete"):
            return
        order = self.doc.execution_order()
        index = order.index(self.selected)
        rest = [node_id for node_id in order if node_id != self.selected]
        deleted = self.selected
        self.selected = rest[min(index, len(rest) - 1)] if rest else None
        self.apply(DeleteNode(deleted, label=f"delete {deleted}"))
        self.notify(f"Deleted {deleted} (u undoes)")

    def action_comment(self) -> None:
        if self._need_selection("comment on"):
            return
        node_id = self.selected
        old = self.doc.graph.nodes[node_id].comment

        def write(text: str | None) -> None:
            if text is not None and text.strip() != old:
                self.apply(SetComment(node_id, text.strip(), label=f"comment on {node_id}"))

        title = f"Comment on {node_id} (saved as # lines above it; | starts a new line):"
        shown = old.replace("\n", " | ")
        self.app.push_screen(
            PromptScreen(title, shown, lambda _text: None),
            lambda text: write(None if text is None else text.replace(" | ", "\n")),
        )

    def action_change_type(self) -> None:
        if self._need_selection("change the type of"):
            return
        from textual.command import CommandPalette

        self.app.push_screen(
            CommandPalette(
                providers=[ChangeTypeCommands],
                placeholder=f"Change {self.selected} to: type to search…",
            )
        )

    def change_node_type(self, type_id: str) -> None:
        if self.selected is None:
            return
        old = self.doc.graph.nodes[self.selected]
        edit = self.doc.change_type(self.selected, type_id)
        kept_params = [name for name in old.params if name in edit.spec.params]
        kept_links = [name for name in old.inputs if name in edit.spec.inputs]
        self.apply(edit)
        parts = [f"{edit.spec.id} is now a {type_id}"]
        if kept_params or kept_links:
            parts.append("kept " + ", ".join(kept_params + kept_links))
        dropped = [n for n in [*old.params, *old.inputs] if n not in kept_params + kept_links]
        if dropped:
            parts.append("dropped " + ", ".join(dropped))
        if edit.unlink:
            parts.append("unlinked " + ", ".join(f"{c}.{n}" for c, n in edit.unlink))
        self.notify("; ".join(parts) + " (u undoes)")

    def action_rename(self) -> None:
        if self._need_selection("rename"):
            return
        old = self.selected

        def rename(new: str | None) -> None:
            if new and new != old:
                self.board.rename(old, new)
                for table in (self.outputs, self.previews, self.fetched):
                    if old in table:
                        table[new] = table.pop(old)
                self.selected = new
                self.doc.apply(RenameNode(old, new, label=f"rename {old} to {new}"))
                self.refresh_document()

        def check(text: str) -> str | None:
            return self.doc.id_problem(text, current=old)

        self.app.push_screen(PromptScreen(f"Rename {old} to:", old, check), rename)

    def action_duplicate(self) -> None:
        if self._need_selection("duplicate"):
            return
        spec = self.doc.duplicate(self.selected)
        self.selected = spec.id
        self.apply(AddNode(spec, label=f"duplicate as {spec.id}"))
        self.notify(f"Duplicated as {spec.id}")

    def _focused_input(self) -> str | None:
        focused = self.focused
        while focused is not None:
            if isinstance(focused, LinkField):
                return focused.input_name
            focused = focused.parent  # type: ignore[assignment]
        return None

    def action_connect(self) -> None:
        if self._need_selection("connect"):
            return
        node_id = self.selected
        node_type = self.doc.registry.node_type(self.doc.graph.nodes[node_id].type)
        if node_type is None or not node_type.inputs:
            self.notify(f"{node_id} has no inputs to connect.", severity="warning")
            return
        name = self._focused_input()
        if name is None:
            linked = self.doc.graph.nodes[node_id].inputs
            name = next((n for n in node_type.inputs if n not in linked), None)
        if name is None and len(node_type.inputs) > 1:
            options = [(f"{n}  ← {linked[n]}", n) for n in node_type.inputs]
            self.app.push_screen(
                ChoiceScreen(f"Connect which input of {node_id}?", options),
                lambda chosen: chosen and self._connect(node_id, chosen),
            )
            return
        self._connect(node_id, name or next(iter(node_type.inputs)))

    def _connect(self, node_id: str, name: str) -> None:
        spec = self.doc.graph.nodes[node_id]
        socket = self.doc.registry.nodes[spec.type].inputs[name]
        current = spec.inputs.get(name)
        options: list[tuple[str, Any]] = [
            (f"{link}{'   (linked now)' if link == current else ''}", link)
            for link in self.doc.candidates(node_id, name)
        ]
        if current is not None:
            options.append((f"disconnect (now {current})", _DISCONNECT))

        def chosen(value: Any) -> None:
            if value is None:
                return
            link = None if value is _DISCONNECT else value
            if link != current:
                label = f"link {node_id}.{name}" if link else f"unlink {node_id}.{name}"
                self.apply(SetInput(node_id, name, link, label=label))

        title = f"Feed {node_id}.{name} ({socket.type.name}) from:"
        empty = f"No output of type {socket.type.name} upstream of {node_id} (none would fit)."
        now = next((i for i, (_label, link) in enumerate(options) if link == current), 0)
        self.app.push_screen(ChoiceScreen(title, options, empty=empty, highlighted=now), chosen)

    def action_disconnect(self) -> None:
        if self._need_selection("disconnect"):
            return
        node_id = self.selected
        linked = self.doc.graph.nodes[node_id].inputs
        name = self._focused_input()
        if name is not None and name in linked:
            self.apply(SetInput(node_id, name, None, label=f"unlink {node_id}.{name}"))
            return
        if not linked:
            self.notify(f"No input of {node_id} is linked.", severity="warning")
            return

        def unlink(chosen: str | None) -> None:
            if chosen:
                self.apply(SetInput(node_id, chosen, None, label=f"unlink {node_id}.{chosen}"))

        options = [(f"{n}  ← {link}", n) for n, link in linked.items()]
        self.app.push_screen(ChoiceScreen(f"Disconnect which input of {node_id}?", options), unlink)

    def action_undo(self) -> None:
        self._step(self.doc.undo, "undo", "Nothing to undo.")

    def action_redo(self) -> None:
        self._step(self.doc.redo, "redo", "Nothing to redo.")

    def _step(self, step: Any, verb: str, nothing: str) -> None:
        edit = step()
        if edit is None:
            self.notify(nothing)
            return
        if isinstance(edit, RenameNode):
            old, new = (edit.new, edit.old) if verb == "undo" else (edit.old, edit.new)
            self.board.rename(old, new)
            if self.selected == old:
                self.selected = new
        elif isinstance(edit, AddNode) and verb == "redo":
            self.selected = edit.spec.id
        elif isinstance(edit, DeleteNode) and verb == "undo":
            self.selected = edit.node_id
        touched = edit.touched() | ({edit.node_id} if isinstance(edit, DeleteNode) else set())
        self.refresh_document(touched, force=True)
        self.notify(f"{verb}: {edit.label}")

    def action_edit(self) -> None:
        """Focus the selected node's first param (or, when it has none, its first input)."""
        inspector = self.query_one(Inspector)
        fields = inspector.query(".param-field Input, .param-field Select, .param-field Switch")
        fields = fields or inspector.query(".link-field Select")
        if fields:
            fields.first().focus()
        else:
            self.notify("This node has nothing to edit.")

    def action_focus_nodes(self) -> None:
        nodes = self.query_one(NodeList)
        (nodes if nodes.display else self.query_one(GraphView)).focus()

    def action_focus_panel(self, panel: str) -> None:
        if panel.startswith("tab-"):
            tabs = self.query_one(TabbedContent)
            tabs.active = panel
            pane = tabs.get_pane(panel)
            target = next((w for w in pane.query("*") if w.focusable), None)
            if target is not None:
                target.focus()
            return
        if (panel == "nodes" and self.graph_mode) or (
            panel == "graph" and not self.query_one(GraphView).display
        ):
            self.action_toggle_graph()
        if panel == "inspector":
            inspector = self.query_one(Inspector)
            field = next((w for w in inspector.query("*") if w.focusable), None)
            (field or inspector).focus()
            return
        self.query_one(NodeList if panel == "nodes" else GraphView).focus()

    def action_toggle_graph(self) -> None:
        """The graph in place of the node list, or back: the same at every width."""
        self.graph_mode = not self.graph_mode
        self.fit_panels()
        self.query_one(GraphView if self.graph_mode else NodeList).focus()

    def on_resize(self) -> None:
        self.fit_panels()

    def fit_panels(self) -> None:
        """Panel widths from the terminal's width and what the panels hold; the preview as
        tall as a square image as wide as the inspector."""
        graph = self.query_one(GraphView)
        nodes = self.query_one(NodeList)
        inspector = self.query_one(Inspector)
        widths = panel_widths(
            self.size.width, nodes.content_width(), graph.graph_layout.width, self.graph_mode
        )
        compact = 0 < widths.nodes < nodes.content_width() + BORDERS
        nodes.set_compact(compact)
        spare = widths.nodes - (nodes.content_width(compact=True) + BORDERS) if compact else 0
        if spare > 0:  # ids alone need less: the graph (or the inspector) takes the rest
            wider = "graph" if widths.graph else "inspector"
            widths = replace(widths, nodes=widths.nodes - spare)
            widths = replace(widths, **{wider: getattr(widths, wider) + spare})
        for widget, width in (
            (nodes, widths.nodes),
            (graph, widths.graph),
            (inspector, widths.inspector),
        ):
            widget.display = width > 0
            if width:
                widget.styles.width = width
        tallest = 8 if self.size.height < 34 else 24
        inspector.query_one(ImagePreview).styles.height = max(
            6, min((widths.inspector - 4) // 2, tallest)
        )
        if self.focused is not None and not self.focused.display:
            self.action_focus_nodes()

    def _need_selection(self, verb: str) -> bool:
        if self.selected is None:
            self.notify(f"Select a node to {verb} first.", severity="warning")
            return True
        return False

    # -- files --------------------------------------------------------------------------------

    def action_save(self) -> None:
        if self.doc.path is None:
            self.action_save_as()
            return
        self._save(self.doc.path)

    def action_save_as(self, then: Callable[[], None] | None = None) -> None:
        current = str(self.doc.path) if self.doc.path else "graph.toml"

        def save(path: str | None) -> None:
            if path:
                self._save(Path(path), then)

        self.app.push_screen(
            PromptScreen("Save as (.toml or .json):", current, _path_problem), save
        )

    def _save(
        self, path: Path, then: Callable[[], None] | None = None, overwrite: bool = False
    ) -> None:
        """Save to `path`, then call `then`; ask first when the file changed on disk."""
        try:
            written = self.doc.save(path, overwrite=overwrite)
        except FileChangedError:
            self._ask_overwrite(path, then)
            return
        except (OSError, ValueError) as exc:
            self.notify(f"Could not save {path}: {exc}", severity="error")
            return
        self.notify(f"Saved {written}")
        self.refresh_title()
        if then is not None:
            then()

    def _ask_overwrite(self, path: Path, then: Callable[[], None] | None) -> None:
        def chosen(choice: str | None) -> None:
            if choice == "overwrite":
                self._save(path, then, overwrite=True)
            elif choice == "save_as":
                self.action_save_as(then)

        options = [
            ("Overwrite it with the graph as edited here", "overwrite"),
            ("Save under another name…", "save_as"),
            ("Cancel: leave the file as it is on disk", None),
        ]
        title = f"{path.name} changed on disk since it was opened (by another program?)."
        self.app.push_screen(ChoiceScreen(title, options), chosen)

    def quit_guarded(self, interrupt: bool = False) -> None:
        """Quit, asking first when there are unsaved changes or a run is going.

        `interrupt` (ctrl+c): stop a run at once, before asking anything.
        """
        if self.exit_after_run:
            self.notify("Still stopping the run…; nodeflow quits as soon as it has stopped.")
            return
        if interrupt:
            self._request_cancel()
        running = self.board.running
        if not self.doc.dirty and (not running or interrupt):
            self.exit_when_stopped()
            return

        def decide(choice: str | None) -> None:
            if choice in ("discard", "quit"):
                self.exit_when_stopped()
            elif choice == "save":
                if self.doc.path is None:
                    self.action_save_as(self.exit_when_stopped)
                else:
                    self._save(self.doc.path, self.exit_when_stopped)

        name = self.doc.path.name if self.doc.path else "The new graph"
        self.app.push_screen(
            ConfirmQuitScreen(name, unsaved=self.doc.dirty, running=running), decide
        )

    def exit_when_stopped(self) -> None:
        """Quit now, or, while a run is going, cancel it and quit as soon as it has stopped.

        A training node writes its resumable checkpoint when cancelled; quitting before the
        run's thread ends would leave it training behind a blank screen.
        """
        if not self.board.running:
            self.app.exit()
            return
        self.exit_after_run = True
        self._request_cancel()
        self.notify("Stopping the run…; nodeflow quits as soon as it has stopped.")

    def _request_cancel(self) -> None:
        if self.board.running and self.cancel_token is not None:
            self.cancel_token.cancel()
            self.refresh_title()

    def action_help(self) -> None:
        """Help, starting with the keys of the panel that has the focus."""
        focused = self.focused
        panel = None
        while focused is not None and panel is None:
            panel = next((p for p in FOCUSED_HELP if focused.id == p), None)
            focused = focused.parent  # type: ignore[assignment]
        sections = self.app.help_sections()  # type: ignore[attr-defined]
        if panel is not None:
            title, rows = FOCUSED_HELP[panel]
            sections = [(f"Here: {title}", rows), *sections]
        self.app.push_screen(HelpScreen(sections))

    # -- running ----------------------------------------------------------------------------

    def action_run(self) -> None:
        self._start_run(None)

    def action_run_to_here(self) -> None:
        if self._need_selection("run up to"):
            return
        self._start_run([self.selected])

    def _start_run(self, targets: list[str] | None) -> None:
        if self.board.running:
            self.notify("A run is going; x cancels it.", severity="warning")
            return
        if not self.doc.graph.nodes:
            self.notify("The graph is empty: press a to add a node.", severity="warning")
            return
        problems = self.doc.problems()
        if problems:
            self.query_one(TabbedContent).active = "tab-problems"
            count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
            self.notify(f"Fix {count} first (see the problems panel).", severity="error")
            return
        self.run_number += 1
        self.cancel_token = CancelToken()
        self.stale_during_run = set()
        self.board.running = True
        self.query_one(TabbedContent).active = "tab-run"
        self.refresh_title()
        self._run(self.run_number, copy.deepcopy(self.doc.graph), targets, self.cancel_token)

    @work(thread=True, exclusive=True, group="run")
    def _run(
        self, number: int, graph: Graph, targets: list[str] | None, cancel: CancelToken
    ) -> None:
        finished = threading.Event()

        def on_event(event: Event) -> None:
            if not finished.is_set():
                self.post_message(RunEventPosted(number, event))

        try:
            executor = self.app.executor()  # type: ignore[attr-defined]
            result = executor.run(graph, targets=targets, on_event=on_event, cancel=cancel)
        except GraphFileError as exc:
            finished.set()
            self.post_message(RunEnded(number, None, "\n".join(p.format() for p in exc.problems)))
            return
        except Exception as exc:
            finished.set()
            self.post_message(RunEnded(number, None, f"{type(exc).__name__}: {exc}"))
            return
        finished.set()
        self.post_message(RunEnded(number, result))

    def action_cancel_run(self) -> None:
        if not self.board.running or self.cancel_token is None:
            self.notify("Nothing is running.")
            return
        self._request_cancel()
        self.notify("Stopping the run at the next batch or step…")

    def on_unmount(self) -> None:
        self._request_cancel()

    @on(RunEventPosted)
    def _run_event(self, message: RunEventPosted) -> None:
        message.stop()
        if message.run != self.run_number:
            return
        event = message.event
        if isinstance(event, RunStarted):
            self.edited_since_run -= set(event.nodes)
            self.query_one(RunPanel).start(event.nodes, self._types())
            self.refresh_title()
        changed = self.board.apply(event)
        self.query_one(RunLog).log_event(event)
        if changed:
            self.query_one(NodeList).show_status(self.board, changed)
            self.query_one(GraphView).show_status(self.board)
            self.query_one(RunPanel).show_status(self.board)
            if self.selected in changed:
                self._show_output(progress=isinstance(event, NodeProgress))

    @on(RunEnded)
    def _run_ended(self, message: RunEnded) -> None:
        message.stop()
        if message.run != self.run_number:
            return
        self.board.running = False
        if self.exit_after_run:
            self.app.exit()
            return
        result = message.result
        if result is None:
            self.board.abort()
            self.query_one(RunLog).log_text(f"the run could not start: {message.error}", "error")
            self.notify(f"The run could not start: {message.error}", severity="error")
        else:
            self._keep_outputs(result)
            self.notify(_verdict(result), severity="information" if result.ok else "warning")
        self.query_one(NodeList).show_status(self.board, set(self.board.nodes))
        self.query_one(GraphView).show_status(self.board)
        self.query_one(RunPanel).show_status(self.board)
        self.refresh_title()
        self._show_output()

    def _keep_outputs(self, result: RunResult) -> None:
        for node_id, outputs in result.outputs.items():
            if node_id not in self.stale_during_run:
                self.outputs[node_id] = outputs
                self.fetched.pop(node_id, None)
        for node_id, batch in result.previews.items():
            if node_id not in self.stale_during_run:
                self.previews[node_id] = batch

    # -- output and preview -------------------------------------------------------------------

    def _show_output(self, progress: bool = False) -> None:
        """The selected node's run status, output summary and image preview.

        The preview always belongs to the selected node: until its images are ready it
        shows a note, never the image of the node selected before.
        """
        inspector = self.query_one(Inspector)
        node_id = self.selected
        if node_id is None:
            inspector.show_output("")
            inspector.show_preview(None, "")
            return
        status = self.board.get(node_id)
        lines = []
        if status.state != State.IDLE:
            lines.append(f"{status.glyph} {status.detail()}")
        for name, text in status.summary.items():
            lines.append(f"output {name}: {text}")
        inspector.show_output("\n".join(lines))
        sample = status.info.get("sample")
        if progress:
            if sample and sample != self.shown_sample:
                self.shown_sample = sample
                self._load_preview(node_id, None, None, str(sample), node_id)
            return
        names = image_outputs(self._node_type(node_id))
        value = next(
            (self.outputs[node_id][n] for n in names if n in self.outputs.get(node_id, {})),
            None,
        )
        batch = self.previews.get(node_id) if names else None
        if node_id in self.fetched:
            self._show_page()
        elif value is not None or batch is not None or sample:
            self.shown_sample = str(sample) if sample else None
            label = f"{node_id}.{names[0]}" if names else f"{node_id} sample"
            inspector.show_preview(None, f"{label}: loading the preview…")
            self._load_preview(node_id, value, batch, str(sample) if sample else None, label)
        elif not names:
            inspector.show_preview(None, "")
        else:
            inspector.show_preview(None, self._no_image_reason(node_id))

    def _node_type(self, node_id: str) -> NodeType | None:
        return self.doc.registry.node_type(self.doc.graph.nodes[node_id].type)

    def _no_image_reason(self, node_id: str) -> str:
        spec = self.doc.graph.nodes[node_id]
        stale = node_id in self.edited_since_run
        return no_image_reason(
            node_id, spec.type, self._node_type(node_id), self.board.get(node_id), stale
        )

    def _show_page(self) -> None:
        images = self.fetched[self.selected or ""]
        self.page = min(self.page, len(images.images) - 1)
        self.query_one(Inspector).show_preview(images.images[self.page], images.caption(self.page))

    def action_page(self, step: int) -> None:
        """The previous or next image of the selected node's batch."""
        images = self.fetched.get(self.selected or "")
        if images is None or len(images.images) < 2:
            self.notify(
                "There is only one image to show here." if images else "No images to page through."
            )
            return
        self.page = (self.page + step) % len(images.images)
        self._show_page()

    def _load_preview(
        self, node_id: str, value: Any, batch: Any, sample: str | None, label: str = ""
    ) -> None:
        self.preview_number += 1
        self.loading.add(node_id)
        self._fetch_preview(self.preview_number, node_id, value, batch, sample, label)

    @work(thread=True, exclusive=True, group="preview")
    def _fetch_preview(
        self, number: int, node_id: str, value: Any, batch: Any, sample: str | None, label: str
    ) -> None:
        """Get the images of an output (pulling one batch of a stream) in a thread."""
        try:
            message = PreviewReady(node_id, fetch_images(label, value, batch, sample))
        except Exception as exc:
            message = PreviewReady(node_id, None, f"{label}: no preview ({exc})")
        if number == self.preview_number:
            self.post_message(message)

    @on(PreviewReady)
    def _preview_ready(self, message: PreviewReady) -> None:
        message.stop()
        self.loading.discard(message.node_id)
        if message.images is not None:
            self.fetched[message.node_id] = message.images
        if message.node_id != self.selected:
            return
        if message.images is None:
            self.query_one(Inspector).show_preview(None, message.error)
        else:
            self._show_page()

    def action_view(self) -> None:
        """The selected node's image full screen, beside the pinned one (A/B) if any."""
        node_id = self.selected
        if node_id is None:
            self.notify("Select a node first: there is nothing to view.")
            return
        images = self.fetched.get(node_id)
        if images is None:
            if node_id in self.loading:
                reason = f"{node_id}'s preview is still loading; v shows it when it is ready."
            else:
                reason = self._no_image_reason(node_id)
            self.notify(reason, severity="warning", timeout=8)
            return
        panes = [(images.images[self.page], images.caption(self.page))]
        if self.pinned is not None and self.pinned[0] != node_id:
            panes.insert(0, (self.pinned[1], f"A  {self.pinned[2]}"))
            panes[1] = (panes[1][0], f"B  {panes[1][1]}")
        self.app.push_screen(PreviewScreen(panes))

    def action_pin(self) -> None:
        """Pin the selected node's image as A, to compare with others (v shows A and B)."""
        node_id = self.selected
        if self.pinned is not None and self.pinned[0] == node_id:
            self.pinned = None
            self.notify(f"Unpinned {node_id}.")
            return
        images = self.fetched.get(node_id or "")
        if node_id is None or images is None:
            self.notify(
                "No image to pin here: "
                + (self._no_image_reason(node_id) if node_id else "select a node."),
                severity="warning",
            )
            return
        self.pinned = (node_id, images.images[self.page], images.caption(self.page))
        self.notify(f"Pinned {node_id} as A: select another node and press v to compare.")


FOCUSED_HELP: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "nodes": (
        "the node list",
        [
            ("up / down", "select the node above or below (everywhere)"),
            ("home / end", "the first or the last node"),
        ],
    ),
    "graph": (
        "the graph",
        [
            ("up / down", "to the layer above (inputs) or below (what reads it)"),
            ("left / right", "to the next box in the layer"),
            ("home / end", "the first source, the last node of the bottom layer"),
            ("click", "select a box"),
        ],
    ),
    "inspector": (
        "the inspector",
        [
            ("tab / shift+tab", "next / previous field"),
            ("c", "on an input: choose the output that feeds it"),
            ("empty a field", "the param's default applies (shown greyed)"),
            ("esc", "back to the node list"),
        ],
    ),
    "problems": (
        "the problems",
        [
            ("up / down, home / end", "move through the problems"),
            ("enter", "select the node at fault"),
        ],
    ),
}
"""Keys of the panel that has the focus, shown first in the help."""


def _verdict(result: RunResult) -> str:
    if result.cancelled:
        return "Run cancelled."
    if result.failed:
        return f"Run finished with {len(result.failed)} failed node(s): {', '.join(result.failed)}"
    return f"Run done in {run_status.format_seconds(result.seconds)}."


def _path_problem(text: str) -> str | None:
    if not text:
        return "give a file name"
    path = Path(text).expanduser()
    if path.suffix.lower() not in (".toml", ".json"):
        return "the name must end in .toml or .json"
    if path.is_dir():
        return f"{path} is a folder"
    return None


class NodeflowApp(App[None]):
    """Edit and run a nodeflow graph in the terminal."""

    CSS_PATH = "app.tcss"
    TITLE = "nodeflow"
    COMMANDS = App.COMMANDS | {NodeTypeCommands}
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-short"), (34, "-tall")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "quit", tooltip="quit (asks first if unsaved)", priority=True),
        Binding("ctrl+c", "interrupt", show=False, priority=True),
    ]

    def __init__(
        self,
        path: str | Path | None = None,
        registry: Registry | None = None,
        executor: Executor | None = None,
        device: str = "auto",
        precision: str = "fp32",
    ):
        super().__init__()
        self.registry = registry if registry is not None else load_registry()
        graph, self.file_problems = open_graph(path)
        self.doc = Document(graph, self.registry)
        self._executor = executor
        self._executor_lock = threading.Lock()
        self.device = device
        self.precision = precision
        self.device_name = str(executor.device) if executor is not None else ""

    def get_default_screen(self) -> Screen:
        return MainScreen()

    def on_mount(self) -> None:
        """Start in the theme chosen last time, and remember the next choice."""
        theme = load_settings().get("theme")
        if isinstance(theme, str) and theme in self.available_themes:
            self.theme = theme
        self.theme_changed_signal.subscribe(self, lambda t: save_setting("theme", t.name))

    @property
    def main(self) -> MainScreen:
        return next(s for s in self.screen_stack if isinstance(s, MainScreen))

    def executor(self) -> Executor:
        """The session's one executor, made on first use (from a run's thread)."""
        with self._executor_lock:
            if self._executor is None:
                # A graph taken from an image writes only under the current folder.
                root = Path.cwd() if self.doc.graph.image is not None else None
                self._executor = Executor(
                    self.registry, device=self.device, precision=self.precision, output_root=root
                )
                self.device_name = str(self._executor.device)
            return self._executor

    def add_node(self, type_id: str) -> None:
        self.main.add_node(type_id)

    def change_node_type(self, type_id: str) -> None:
        self.main.change_node_type(type_id)

    async def action_quit(self) -> None:
        self.main.quit_guarded()

    async def action_interrupt(self) -> None:
        """ctrl+c: stop a run at once, then quit as ctrl+q does."""
        self.main.quit_guarded(interrupt=True)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if not isinstance(screen, MainScreen):
            return
        for binding in MainScreen.BINDINGS:
            assert isinstance(binding, Binding)
            if binding.show:
                yield SystemCommand(
                    binding.tooltip.capitalize(),
                    f"key {self.get_key_display(binding)}",
                    lambda action=binding.action: screen.run_action(action),
                )

    def help_sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """Every binding, for the help screen."""

        def keys(bindings: list[Any]) -> list[tuple[str, str]]:
            rows = []
            for binding in bindings:
                shown = " / ".join(
                    self.get_key_display(Binding(key, binding.action))
                    for key in binding.key.split(",")
                )
                rows.append((shown, binding.tooltip or binding.description))
            return rows

        return [
            ("Editing and running", keys(MainScreen.BINDINGS)),
            ("Graph view", keys(GraphView.BINDINGS)),
            (
                "Everywhere",
                [
                    ("ctrl+p", "command palette: every action, and add any node type"),
                    ("tab / shift+tab", "next / previous panel or field"),
                    ("1 … 6", "go to the nodes, graph, inspector, problems, log, run panel"),
                    ("ctrl+q", "quit (asks first with unsaved changes or a run going)"),
                    ("ctrl+c", "stop the run if one is going, then quit as ctrl+q does"),
                ],
            ),
        ]

"""The inspector: the selected node's doc, inputs, params and output, each editable in place.

Params get the field their kind calls for: a number field with its range, a choice list, a
switch, a text field for paths and text. A value is checked as it is typed (`Param.check`);
a refused one is not applied, and the reason stays under the field until it is fixed.
Inputs are choice lists holding only the outputs whose type fits, nearest upstream first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.validation import ValidationResult, Validator
from textual.widgets import Input, Label, Select, Static, Switch

from nodeflow.graph import Link, parse_literal
from nodeflow.node import Input as InputSocket
from nodeflow.node import NodeType, Param
from nodeflow.tui.completion import PathSuggester, shipped_model_names
from nodeflow.tui.document import UNSET, Document
from nodeflow.tui.messages import InputLinked, ParamEdited
from nodeflow.tui.widgets.preview import ImagePreview

NAME_WIDTH = 12
NAME_WIDTH_MAX = 24
"""Field names take the width of the longest of the node's, within these bounds."""


def parse_text(param: Param, text: str) -> Any:
    """What a param field's text means: `UNSET` when empty, else a value of the param's kind."""
    text = text.strip()
    if not text:
        return UNSET
    if param.kind in ("str", "path"):
        return text
    return parse_literal(text)


def refusal(param: Param, value: Any) -> str | None:
    """Why `value` cannot be set, or None when it can (`UNSET` falls back to the default)."""
    if value is UNSET:
        return "a value is required" if param.required else None
    return param.check(value)


def format_value(value: Any) -> str:
    if value is UNSET or value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def _range(param: Param) -> str:
    if param.min is None and param.max is None:
        return ""
    low = "" if param.min is None else format_value(_whole(param.min))
    high = "" if param.max is None else format_value(_whole(param.max))
    return f"{low}..{high}"


def _whole(number: float) -> float | int:
    return int(number) if float(number).is_integer() else number


def _reflow(text: str) -> str:
    """A docstring's paragraphs with their line breaks undone, so they wrap to the panel."""
    paragraphs = [" ".join(p.split()) for p in text.strip().split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p)


class ParamValidator(Validator):
    """Checks a param field's text with the param's own rules."""

    def __init__(self, param: Param):
        super().__init__()
        self.param = param

    def validate(self, value: str) -> ValidationResult:
        reason = refusal(self.param, parse_text(self.param, value))
        return self.success() if reason is None else self.failure(reason)


class ParamField(Vertical):
    """One param: name, field, range; the refusal reason and the param's help below."""

    DEFAULT_CSS = """
    ParamField {
        height: auto;
        .field-row { height: auto; }
        .field-name { width: 12; padding-top: 0; text-wrap: nowrap; text-overflow: ellipsis; }
        .field-hint { width: auto; padding-left: 1; color: $text-muted; }
        Input, Select { width: 1fr; }
        SelectCurrent Static#label { text-wrap: nowrap; text-overflow: ellipsis; }
        .field-error { color: $text-error; display: none; padding-left: 12; }
        &.-invalid .field-error { display: block; }
        .field-help { color: $text-muted; padding-left: 12; display: none; }
        &:focus-within .field-help { display: block; }
        Switch { border: none; height: 1; padding: 0; }
    }
    """

    def __init__(
        self, node_id: str, name: str, param: Param, value: Any, base_dir: Path | None = None
    ):
        super().__init__(classes="param-field")
        self.node_id, self.param_name, self.param = node_id, name, param
        self.shown = value
        self.base_dir = base_dir or Path.cwd()
        self.models = shipped_model_names(name) if param.kind == "path" else []

    def compose(self) -> ComposeResult:
        with Horizontal(classes="field-row"):
            yield Label(self.param_name, classes="field-name").with_tooltip(self.param.describe())
            yield self._field()
            hint = _range(self.param)
            if hint:
                yield Label(hint, classes="field-hint")
        yield Static(self._first_refusal(), classes="field-error", markup=False)
        if self.param.help:
            yield Static(self.param.help, classes="field-help", markup=False)
        if self.models:
            shipped = ", ".join(self.models)
            yield Static(f"shipped: {shipped} (→ completes)", classes="field-help", markup=False)

    def _first_refusal(self) -> str:
        """A value read from the file that the param refuses, said at once."""
        reason = refusal(self.param, self.shown) if self.shown is not UNSET else None
        if reason:
            self.add_class("-invalid")
        return f"✗ {reason}" if reason else ""

    def _field(self) -> Input | Select | Switch:
        param, value = self.param, self.shown
        default = None if param.required else param.default
        if param.kind == "choice":
            chosen = value if value is not UNSET else default
            options = [(choice, choice) for choice in param.choices]
            prompt = "choose one"
            if value is not UNSET and value not in param.choices:
                prompt = f"{format_value(value)}: not a choice"
            return Select(
                options,
                value=chosen if chosen in param.choices else Select.NULL,
                allow_blank=param.required or chosen not in param.choices,
                compact=True,
                type_to_search=False,
                prompt=prompt,
            )
        if param.kind == "bool":
            on_value = value if isinstance(value, bool) else bool(default)
            return Switch(on_value)
        placeholder = f"default {format_value(default)}" if default is not None else ""
        if param.required:
            placeholder = "required"
        suggester = None
        if param.kind == "path":
            suggester = PathSuggester(self.base_dir, self.models)
        return Input(
            format_value(value),
            placeholder=placeholder,
            compact=True,
            validators=[ParamValidator(param)],
            validate_on=["changed"],
            suggester=suggester,
        )

    def sync(self, value: Any) -> None:
        """Show the document's value (after an undo, say) unless it is already shown."""
        if value == self.shown:
            return
        self.shown = value
        self.remove_class("-invalid")
        field = self.query_one(".field-row").children[1]
        if isinstance(field, Input):
            with field.prevent(Input.Changed):
                field.value = format_value(value)
        elif isinstance(field, Select):
            chosen = value if value is not UNSET else self.param.default
            with field.prevent(Select.Changed):
                field.value = chosen if chosen in self.param.choices else Select.NULL
        elif isinstance(field, Switch):
            with field.prevent(Switch.Changed):
                field.value = bool(value if value is not UNSET else self.param.default)

    def _offer(self, value: Any) -> None:
        reason = refusal(self.param, value)
        self.set_class(reason is not None, "-invalid")
        self.query_one(".field-error", Static).update(f"✗ {reason}" if reason else "")
        if reason is None and not self._same(value):
            if self.param.kind == "float" and type(value) is int:
                value = float(value)  # saved as 10.0: the file reads as the float it is
            self.shown = value
            self.post_message(ParamEdited(self.node_id, self.param_name, value))

    def _same(self, value: Any) -> bool:
        """Whether `value` is what is shown already (the default counts as unset)."""
        if value == self.shown:
            return True
        default = None if self.param.required else self.param.default
        return self.shown is UNSET and value == default

    @on(Input.Changed)
    def _typed(self, event: Input.Changed) -> None:
        event.stop()
        self._offer(parse_text(self.param, event.value))

    @on(Select.Changed)
    def _chosen(self, event: Select.Changed) -> None:
        event.stop()
        self._offer(UNSET if event.value is Select.NULL else event.value)

    @on(Switch.Changed)
    def _switched(self, event: Switch.Changed) -> None:
        event.stop()
        self._offer(event.value)


class LinkField(Horizontal):
    """One input: a choice among the outputs that fit it; blank means unlinked."""

    DEFAULT_CSS = """
    LinkField {
        height: auto;
        .field-name { width: 12; text-wrap: nowrap; text-overflow: ellipsis; }
        Select { width: 1fr; }
        SelectCurrent Static#label { text-wrap: nowrap; text-overflow: ellipsis; }
    }
    """

    def __init__(
        self, node_id: str, name: str, socket: InputSocket, link: Link | None, choices: list[Link]
    ):
        super().__init__(classes="link-field")
        self.node_id, self.input_name, self.socket = node_id, name, socket
        self.link, self.choices = link, choices

    def compose(self) -> ComposeResult:
        yield Label(self.input_name, classes="field-name").with_tooltip(
            f"{self.socket.type.name}: {self.socket.help}"
            if self.socket.help
            else self.socket.type.name
        )
        yield Select(
            self._options(),
            value=self.link if self.link else Select.NULL,
            prompt=f"not linked ({self.socket.type.name}{'' if self.socket.optional else ', required'})",
            compact=True,
            type_to_search=False,
        )

    def _options(self) -> list[tuple[str, Link]]:
        links = list(self.choices)
        if self.link is not None and self.link not in links:
            links.insert(0, self.link)
        return [(str(link), link) for link in links]

    def sync(self, link: Link | None, choices: list[Link]) -> None:
        if (link, choices) == (self.link, self.choices):
            return
        self.link, self.choices = link, choices
        select = self.query_one(Select)
        with select.prevent(Select.Changed):
            select.set_options(self._options())
            select.value = link if link else Select.NULL

    @on(Select.Changed)
    def _chosen(self, event: Select.Changed) -> None:
        event.stop()
        link = None if event.value is Select.NULL else event.value
        if link != self.link:
            self.link = link
            self.post_message(InputLinked(self.node_id, self.input_name, link))


class Inspector(VerticalScroll):
    """Everything about the selected node; rebuilt when another node is selected."""

    DEFAULT_CSS = """
    Inspector {
        padding: 0 1;
        #inspector-title { text-style: bold; color: $text-accent; }
        #inspector-comment { color: $text-muted; text-style: italic; }
        #inspector-summary { margin-bottom: 1; }
        .section { color: $text-primary; text-style: bold; margin-top: 0; }
        #inspector-output { color: $text-muted; }
        #preview-caption { color: $text-muted; }
        #inspector-about { color: $text-muted; margin-top: 1; }
        #inspector-fields { height: auto; }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "Inspector"
        self.node_id: str | None = None
        self.node_type: NodeType | None = None
        self._wanted: tuple[Document, str | None] | None = None
        self._building = False

    def compose(self) -> ComposeResult:
        yield Static("", id="inspector-title", markup=False)
        yield Static("", id="inspector-comment", markup=False)
        yield Static("Select a node, or press a to add one.", id="inspector-summary", markup=False)
        yield Vertical(id="inspector-fields")
        yield Static("", id="inspector-output", markup=False)
        yield ImagePreview(id="preview")
        yield Static("", id="preview-caption", markup=False)
        yield Static("", id="inspector-about", markup=False)

    def show_node(self, doc: Document, node_id: str | None, force: bool = False) -> None:
        """Show `node_id` as the document has it now; cheap when it is already shown.

        A field being typed in keeps its text (the document catches up with it message by
        message) unless `force` (an undo, say) says the document's value wins.
        """
        spec = doc.graph.nodes.get(node_id or "")
        node_type = doc.registry.node_type(spec.type) if spec else None
        if node_id == self.node_id and node_type is self.node_type and not self._building:
            self._sync(doc, force)
            return
        self._wanted = (doc, node_id)
        if not self._building:
            self._building = True
            self.call_later(self._rebuild)

    async def _rebuild(self) -> None:
        while self._wanted is not None:
            doc, node_id = self._wanted
            self._wanted = None
            await self._build(doc, node_id)
        self._building = False

    async def _build(self, doc: Document, node_id: str | None) -> None:
        fields = self.query_one("#inspector-fields", Vertical)
        await fields.remove_children()
        spec = doc.graph.nodes.get(node_id or "")
        node_type = doc.registry.node_type(spec.type) if spec else None
        self.node_id, self.node_type = node_id, node_type
        title = self.query_one("#inspector-title", Static)
        summary = self.query_one("#inspector-summary", Static)
        about = self.query_one("#inspector-about", Static)
        self._show_comment(spec.comment if spec else "")
        if spec is None:
            title.update("")
            summary.update("Select a node, or press a to add one.")
            about.update("")
            self.show_output("")
            return
        title.update(f"{spec.id} · {spec.type}")
        if node_type is None:
            summary.update(f"Unknown node type {spec.type!r}: see the problems panel.")
            about.update("")
            return
        summary.update(node_type.summary)
        about.update(_reflow(node_type.doc.partition("\n")[2]))
        widgets: list[Any] = []
        if node_type.inputs:
            widgets.append(Static("inputs", classes="section"))
            for name, socket in node_type.inputs.items():
                link, choices = spec.inputs.get(name), doc.candidates(spec.id, name)
                widgets.append(LinkField(spec.id, name, socket, link, choices))
        if node_type.params:
            widgets.append(Static("params", classes="section"))
            for name, param in node_type.params.items():
                value = spec.params.get(name, UNSET)
                widgets.append(ParamField(spec.id, name, param, value, doc.graph.base_dir))
        await fields.mount_all(widgets)
        longest = max(map(len, [*node_type.inputs, *node_type.params]), default=0)
        for label in fields.query(".field-name"):  # `sample_every` never runs into its value
            label.styles.width = min(max(NAME_WIDTH, longest + 1), NAME_WIDTH_MAX)

    def _sync(self, doc: Document, force: bool) -> None:
        spec = doc.graph.nodes.get(self.node_id or "")
        self._show_comment(spec.comment if spec else "")
        if spec is None:
            return
        for field in self.query(LinkField):
            field.sync(spec.inputs.get(field.input_name), doc.candidates(spec.id, field.input_name))
        for field in self.query(ParamField):
            if force or not field.has_focus_within:
                field.sync(spec.params.get(field.param_name, UNSET))

    def _show_comment(self, comment: str) -> None:
        comment_line = self.query_one("#inspector-comment", Static)
        comment_line.update("\n".join(f"# {line}" for line in comment.splitlines()))
        comment_line.display = bool(comment)

    def show_output(self, text: str) -> None:
        self.query_one("#inspector-output", Static).update(text)

    def show_preview(self, pixels: Any, caption: str) -> None:
        """Show an image (RGB uint8 pixels) under the output, or only a caption."""
        preview = self.query_one(ImagePreview)
        preview.show(pixels)
        preview.display = pixels is not None
        self.query_one("#preview-caption", Static).update(caption)

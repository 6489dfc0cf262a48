"""One table for every resource kind: live `/` filter, sort by any column, `space`/`ctrl+a`
selection counted in the title, `home`/`end`, and a cursor that stays on the same object (by key)
across refreshes, filters, sorts and operations.

It takes data, not core types: rows are items keyed by a string, cells come from a pure function
of the item, columns declare their label, width, sort key and how early they are dropped when the
view is narrow. Updates touch only the cells whose text changed and re-order rows only when rows
came or went or a value of the sort column changed, so a tick over a large list stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Mapping, TypeVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.message import Message
from textual.widgets import DataTable, Input

from hyperconsole.sanitize import visible

T = TypeVar("T")
SELECT_COLUMN = "_sel"


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int
    sort: Callable[[Any], Any] | None = None  # item -> comparable; None: not a sort column
    descending: bool = False  # first sort on this column goes high-to-low (CPU %, memory)
    priority: int = 0  # columns are dropped highest priority number first when the view is narrow
    flex: bool = False  # takes the width left over (lists of names, paths)


class ResourceTable(DataTable, inherit_bindings=False):
    """The DataTable inside a ResourceView: `home`/`end` go to the first/last row; `enter` is
    left to the kind's actions (details, revert …)."""

    BINDINGS = [
        Binding("up", "cursor_up", "Cursor up", show=False),
        Binding("down", "cursor_down", "Cursor down", show=False),
        Binding("right", "scroll_right", "Scroll right", show=False),
        Binding("left", "scroll_left", "Scroll left", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First row", show=False, id="view.first"),
        Binding("end", "last", "Last row", show=False, id="view.last"),
    ]

    def action_first(self) -> None:
        if self.row_count:
            self.move_cursor(row=0)

    def action_last(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)

    def arrange(self, order: list[str]) -> None:
        """Show the rows in `order` (every row key once) without re-adding them: the same
        re-indexing DataTable.sort does, from an order computed on the items, not the cells."""
        from textual._two_way_dict import TwoWayDict

        row_keys = {row_key.value: row_key for row_key in self._data}
        self._row_locations = TwoWayDict({row_keys[key]: index for index, key in enumerate(order)})
        self._update_count += 1
        self.refresh()


class ResourceView(Vertical, Generic[T]):
    """A titled, filterable, sortable, selectable table over {key: item}."""

    DEFAULT_CSS = """
    ResourceView { height: 1fr; border: round $primary; border-title-color: $accent; border-title-style: bold; }
    ResourceView:focus-within { border: round $accent; }
    ResourceView > Input, ResourceView > Input:focus { dock: top; height: 1; border: none; padding: 0 1; }
    ResourceView > Input.hidden { display: none; }
    ResourceView > ResourceTable { height: 1fr; }
    """
    BINDINGS = [
        Binding("slash", "filter", "Filter", id="view.filter"),
        Binding("greater_than_sign", "sort(1)", "Sort →", show=False, id="view.sort_next"),
        Binding("less_than_sign", "sort(-1)", "Sort ←", show=False, id="view.sort_prev"),
        Binding("equals_sign", "reverse", "Reverse sort", show=False, id="view.sort_reverse"),
        Binding("space", "toggle", "Select", id="view.select"),
        Binding("ctrl+a", "select_all", "Select all", show=False, id="view.select_all"),
        Binding("escape", "clear", "Clear", show=False, id="view.clear"),
    ]

    class Highlighted(Message):
        """The cursor is on another object (or on none)."""

        def __init__(self, view: "ResourceView", key: str | None) -> None:
            super().__init__()
            self.view = view
            self.key = key

        @property
        def control(self) -> "ResourceView":
            return self.view

    def __init__(self, title: str, columns: Iterable[Column], cells: Callable[[T], dict[str, Text]],
                 search: Callable[[T], str], *, sort: str | None = None, selectable: bool = True,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.title = title
        self.columns = tuple(columns)
        self.cells_of = cells
        self.search_of = search
        self.selectable = selectable
        self.items: Mapping[str, T] = {}
        self.selected: set[str] = set()
        self.filter_text = ""
        self.sort_column = sort if sort is not None else next((c.key for c in self.columns if c.sort), "")
        # A column that reads best largest (or newest) first starts that way.
        self.sort_reverse = any(c.key == self.sort_column and c.descending for c in self.columns)
        self._note = ""
        self._cells: dict[str, dict[str, Text]] = {}  # rows shown: key -> every column's cell
        self._sort_values: dict[str, Any] = {}
        self._shown_columns: tuple[Column, ...] = self.columns
        self._widths: dict[str, int] = {c.key: c.width for c in self.columns}
        self._last_key: str | None = None
        # The object the operator put the cursor on, while a filter or refresh hides it: the
        # cursor returns to it when it is shown again, unless the operator moved on meanwhile.
        self._wanted: str | None = None
        self._placed: str | None = None
        self._title_text = ""

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter — enter keeps, esc clears", classes="hidden")
        yield ResourceTable(cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self._build_columns()
        self._update_title()

    @property
    def table(self) -> ResourceTable:
        return self.query_one(ResourceTable)

    def focus(self, scroll_visible: bool = True) -> "ResourceView":
        self.table.focus(scroll_visible)
        return self

    # -- data ---------------------------------------------------------------------------------
    def set_items(self, items: Mapping[str, T], changed: Iterable[str] | None = None) -> None:
        """Show `items`. `changed` names the keys that were added, removed or changed since the
        last call (a poll diff); None means any may have changed."""
        self.items = items  # not copied: a tick over a thousand VMs stays cheap
        touched = set(self.items) | set(self._cells) if changed is None else set(changed)
        self.selected &= self.items.keys()
        self._sync(touched)

    def _matches(self, item: T) -> bool:
        needle = self.filter_text.casefold()
        return not needle or needle in self.search_of(item).casefold()

    def _row(self, key: str, item: T) -> dict[str, Text]:
        cells = self.cells_of(item)
        if self.selectable:
            cells[SELECT_COLUMN] = Text("●" if key in self.selected else " ", "bold cyan")
        return cells

    def _sort_value(self, item: T) -> Any:
        column = next((c for c in self.columns if c.key == self.sort_column and c.sort), None)
        return column.sort(item) if column else 0

    def _sync(self, keys: Iterable[str]) -> None:
        table = self.table
        cursor, index = self.cursor_key, table.cursor_row
        shown = self._shown_keys()
        reorder = False
        for key in keys:
            item = self.items.get(key)
            old = self._cells.get(key)
            if item is None or not self._matches(item):
                if old is not None:
                    table.remove_row(key)
                    del self._cells[key]
                    self._sort_values.pop(key, None)
                continue
            cells = self._row(key, item)
            if old is None:
                table.add_row(*(cells[c] for c in shown), key=key)
                reorder = True
            else:
                for column in shown:
                    if old[column] != cells[column]:  # only cells whose text changed are touched
                        table.update_cell(key, column, cells[column])
            self._cells[key] = cells
            value = self._sort_value(item)
            if self._sort_values.get(key, value) != value or old is None:
                reorder = True
            self._sort_values[key] = value
        if reorder:
            self._reorder()
        self._restore_cursor(cursor, index)
        self._update_title()

    def _reorder(self) -> None:
        table = self.table
        if not table.row_count:
            return
        if self.sort_column:
            order = sorted(self._cells, key=lambda k: (self._sort_values.get(k, 0), k))
        else:  # no sort column: the order the items came in (a snapshot tree)
            order = [k for k in self.items if k in self._cells]
        if self.sort_reverse:
            order.reverse()
        table.arrange(order)

    def _restore_cursor(self, key: str | None, index: int) -> None:
        """Back on the same object; if it left the view, on the row that took its place."""
        table = self.table
        if self._wanted in self._cells:
            key, self._wanted = self._wanted, None
        elif key is not None and key not in self._cells and self._wanted is None:
            self._wanted = key
        if not table.row_count:
            self._announce()
            return
        row = table.get_row_index(key) if key in self._cells else min(max(index, 0), table.row_count - 1)
        if row != table.cursor_row:
            table.move_cursor(row=row, animate=False)
        self._placed = self.cursor_key
        self._announce()

    def _announce(self) -> None:
        key = self.cursor_key
        if key != self._last_key:
            self._last_key = key
            self.post_message(self.Highlighted(self, key))

    # -- what the cursor and the selection point at ---------------------------------------------
    @property
    def cursor_key(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        try:
            return table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0))[0].value
        except Exception:  # the cursor sits past a row that was just removed
            return None

    def move_to(self, key: str) -> None:
        if key in self._cells:
            self.table.move_cursor(row=self.table.get_row_index(key), animate=False)
            self._wanted, self._placed = None, key
            self._announce()

    def shown_keys(self) -> list[str]:
        """Keys of the rows on screen, in display order."""
        table = self.table
        return [table.coordinate_to_cell_key(Coordinate(i, 0))[0].value for i in range(table.row_count)]

    def targets(self) -> list[str]:
        """The selection (in display order) if there is one, else the cursor row."""
        if self.selected:
            order = {key: i for i, key in enumerate(self.shown_keys())}
            return sorted(self.selected, key=lambda k: (order.get(k, len(order)), k))
        key = self.cursor_key
        return [key] if key is not None else []

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        key = event.row_key.value
        if key == self.cursor_key != self._placed:  # the operator moved (not a stale event of ours)
            self._wanted = self._placed = None
        self._announce()

    # -- title, header, columns -----------------------------------------------------------------
    @property
    def note(self) -> str:
        """Words after the counts in the title: how far a paged listing got, or why it failed."""
        return self._note

    @note.setter
    def note(self, text: str) -> None:
        self._note = text
        self._update_title()

    def _update_title(self) -> None:
        total, shown = len(self.items), len(self._cells)
        title = f"{self.title} [{shown}/{total}]" if self.filter_text else f"{self.title} [{total}]"
        if self.filter_text:
            title += f" /{self.filter_text}"
        if self.selected:
            title += f" ({len(self.selected)} selected)"
        if self._note:
            title += f" · {self._note}"
        if title != self._title_text:  # a tick that changed no count repaints no border
            self._title_text = title
            self.border_title = Text(visible(title))  # names from libvirt, typed filters: shown literally

    def _label(self, column: Column) -> Text:
        if column.key != self.sort_column:
            return Text(column.label)
        return Text(column.label + (" ▼" if self.sort_reverse else " ▲"), "bold")

    def _fit(self, width: int) -> tuple[tuple[Column, ...], dict[str, int]]:
        """The columns that fit `width` cells, dropping the least important first, and their
        widths: what is left over goes to the first flexible column."""
        columns = list(self.columns)
        while len(columns) > 1 and sum(c.width + 2 for c in columns) > width:
            columns.remove(max(columns, key=lambda c: (c.priority, columns.index(c))))
        widths = {c.key: c.width for c in columns}
        flex = next((c for c in columns if c.flex), None)
        if flex is not None:
            widths[flex.key] += max(0, width - sum(c.width + 2 for c in columns))
        return tuple(columns), widths

    def _shown_keys(self) -> list[str]:
        return ([SELECT_COLUMN] if self.selectable else []) + [c.key for c in self._shown_columns]

    def _build_columns(self) -> None:
        table = self.table
        table.clear(columns=True)
        if self.selectable:
            table.add_column(" ", key=SELECT_COLUMN, width=1)
        for column in self._shown_columns:
            table.add_column(self._label(column), key=column.key, width=self._widths[column.key])
        shown = self._shown_keys()
        for key, row in self._cells.items():
            table.add_row(*(row[c] for c in shown), key=key)
        self._reorder()

    def on_resize(self) -> None:
        width = self.size.width - (3 if self.selectable else 0) - 2  # the scrollbar
        fitted, widths = self._fit(width)
        if (fitted, widths) != (self._shown_columns, self._widths):
            cursor = self.cursor_key
            self._shown_columns, self._widths = fitted, widths
            self._build_columns()
            self._restore_cursor(cursor, 0)

    # -- keys -----------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("toggle", "select_all"):
            return self.selectable
        if action == "clear":  # nothing to clear: esc goes on to the screen (closes a dialog)
            return bool(self.filter_text or self.selected or self.query_one(Input).has_focus)
        return True

    def action_filter(self) -> None:
        box = self.query_one(Input)
        box.remove_class("hidden")
        box.focus()

    @on(Input.Changed)
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.set_filter(event.value.strip())

    @on(Input.Submitted)
    def _filter_kept(self, event: Input.Submitted) -> None:
        event.stop()
        if not event.value.strip():
            event.input.add_class("hidden")
        self.table.focus()

    def set_filter(self, text: str) -> None:
        if text != self.filter_text:
            self.filter_text = text
            self._sync(set(self.items) | set(self._cells))

    def action_clear(self) -> None:
        box = self.query_one(Input)
        if box.value or box.has_focus or self.filter_text:
            box.value = ""
            box.add_class("hidden")
            self.set_filter("")
        elif self.selected:
            self.selected.clear()
            self._sync(set(self._cells))
        self.table.focus()

    def action_toggle(self) -> None:
        key = self.cursor_key
        if key is None:
            return
        self.selected ^= {key}
        self._sync({key})
        table = self.table
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1)

    def action_select_all(self) -> None:
        shown = set(self._cells)
        self.selected = set() if shown <= self.selected else self.selected | shown
        self._sync(shown)

    def action_sort(self, step: int) -> None:
        sortable = [c for c in self.columns if c.sort]
        if not sortable:
            return
        keys = [c.key for c in sortable]
        index = keys.index(self.sort_column) if self.sort_column in keys else -1
        column = sortable[(index + step) % len(sortable)]
        self.sort_by(column.key, column.descending)

    def action_reverse(self) -> None:
        self.sort_by(self.sort_column, not self.sort_reverse)

    def sort_by(self, column: str, reverse: bool = False) -> None:
        cursor = self.cursor_key
        self.sort_column, self.sort_reverse = column, reverse
        self._sort_values = {k: self._sort_value(self.items[k]) for k in self._cells}
        for spec in self._shown_columns:
            self.table.columns[spec.key].label = self._label(spec)  # type: ignore[index]
        self.table.refresh()
        self._reorder()
        self._restore_cursor(cursor, 0)

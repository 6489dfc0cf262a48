"""One table for every resource kind: live `/` filter, sort by any column, `space`/`ctrl+a`
selection counted in the title, `home`/`end`, and a cursor that stays on the same object (by key)
across refreshes, filters, sorts and operations.

It takes data, not core types: rows are items keyed by a string, cells come from a pure function
of the item, columns declare their label, width, sort key and how early they are dropped when the
view is narrow.

The table is virtual: it keeps the display order (a list of keys) and a sort value per row, and
makes cells only for the rows on screen, when they are painted. An update repaints a line only
when the row on it changed its *displayed* text or another row took its place, so a tick over ten
thousand VMs costs about what one screenful costs. The view tells its screen which rows are on
screen (`ViewportChanged`) so what is sampled can follow what is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Mapping, TypeVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.timer import Timer
from textual.widgets import Input

from hyperconsole.sanitize import visible

T = TypeVar("T")
SELECT_COLUMN = "_sel"
CELL_PADDING = 1  # blank cells on each side of a cell
VIEWPORT_SETTLE = 0.15  # seconds the rows on screen stay put before the screen is told


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int
    sort: Callable[[Any], Any] | None = None  # item -> comparable; None: not a sort column
    descending: bool = False  # first sort on this column goes high-to-low (CPU %, memory)
    priority: int = 0  # columns are dropped highest priority number first when the view is narrow
    flex: bool = False  # takes the width left over (lists of names, paths)


def matches(text: str, item: Any, search_of: Callable[[Any], str], cells_of: Callable[[Any], dict[str, Text]],
            columns: set[str]) -> bool:
    """The filter: `COLUMN:VALUE` words (e.g. `host:alpha`, for a column this table has) keep the
    rows whose cell in that column reads VALUE; the rest of the text is looked for in the row's
    search text."""
    words = text.casefold().split()
    fields = [w.split(":", 1) for w in words if w.split(":", 1)[0] in columns and ":" in w]
    if fields:
        cells = cells_of(item)
        if any(cells[key].plain.casefold() != value for key, value in fields):
            return False
        needle = " ".join(w for w in words if not (w.split(":", 1)[0] in columns and ":" in w))
    else:
        needle = text.casefold()
    return not needle or needle in search_of(item).casefold()


@dataclass(frozen=True)
class ShownColumn:
    """A column as the table draws it: its header and its width in cells."""

    key: str
    label: Text
    width: int


class ResourceTable(ScrollView, can_focus=True, inherit_bindings=False):
    """The rows of a ResourceView, drawn one screen line at a time (Textual's line API).

    It holds the display order and the cells of the rows on screen only; `cells_of(key)` makes a
    row's cells when it is painted. `rows_rendered` counts row lines drawn (the header apart), so
    a test can see what an update repainted. `home`/`end` go to the first/last row; `enter` is left
    to the kind's actions (details, revert …)."""

    DEFAULT_CSS = """
    ResourceTable { background: $surface; color: $foreground; overflow-x: hidden; }
    ResourceTable:focus { background-tint: $foreground 5%; }
    ResourceTable > .resource-table--header { text-style: bold; background: $panel; color: $foreground; }
    ResourceTable:focus > .resource-table--header { background-tint: $foreground 5%; }
    ResourceTable:ansi > .resource-table--header { background: ansi_bright_blue; color: ansi_default; }
    ResourceTable > .resource-table--even-row { background: $surface-lighten-1 50%; }
    ResourceTable:dark > .resource-table--even-row { background: $surface-darken-1 40%; }
    ResourceTable > .resource-table--cursor {
        background: $block-cursor-blurred-background; color: $block-cursor-blurred-foreground;
        text-style: $block-cursor-blurred-text-style;
    }
    ResourceTable:focus > .resource-table--cursor {
        background: $block-cursor-background; color: $block-cursor-foreground; text-style: $block-cursor-text-style;
    }
    """
    COMPONENT_CLASSES = {"resource-table--header", "resource-table--even-row", "resource-table--cursor"}
    BINDINGS = [
        Binding("up", "cursor_up", "Cursor up", show=False),
        Binding("down", "cursor_down", "Cursor down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First row", show=False, id="view.first"),
        Binding("end", "last", "Last row", show=False, id="view.last"),
    ]

    def __init__(self, cells_of: Callable[[str], tuple[Text, ...]], moved: Callable[[], None],
                 viewport: Callable[[], None]) -> None:
        super().__init__()
        self._cells_of = cells_of  # key -> the row's cells, in column order
        self._moved = moved  # the cursor moved (by the operator or by code)
        self._viewport = viewport  # the rows on screen may be others
        self.columns: dict[str, ShownColumn] = {}
        self.keys: list[str] = []  # display order
        self._index: dict[str, int] = {}
        self.cursor_row = 0
        self._painted: dict[str, tuple[Text, ...]] = {}  # cells of the rows on screen, as last made
        self._styles: tuple[Style, Style, Style, Style] | None = None
        self.rows_rendered = 0

    # -- the order, the cells ---------------------------------------------------------------------
    @property
    def row_count(self) -> int:
        return len(self.keys)

    @property
    def page_height(self) -> int:
        """Rows that fit under the header."""
        return max(0, self.scrollable_content_region.height - 1)

    def visible_keys(self) -> list[str]:
        top = self.scroll_offset.y
        return self.keys[top: top + self.page_height]

    def set_columns(self, columns: Iterable[ShownColumn]) -> None:
        self.columns = {c.key: c for c in columns}
        self._painted.clear()
        self._resize_virtual()
        self.refresh()

    def relabel(self, labels: Mapping[str, Text]) -> None:
        self.columns = {k: ShownColumn(k, labels.get(k, c.label), c.width) for k, c in self.columns.items()}
        self.refresh(Region(0, 0, self.size.width, 1))

    def update(self, order: list[str] | None, changed: Iterable[str]) -> None:
        """Take a new display order (None: the same) and the keys whose cells may differ; repaint
        the lines whose row is another one or shows other text."""
        before = self.visible_keys()
        if order is not None:
            self.keys = order
            self._index = {key: i for i, key in enumerate(order)}
            self.cursor_row = min(self.cursor_row, max(0, len(order) - 1))
            self._resize_virtual()
        after = self.visible_keys()
        changed = changed if isinstance(changed, (set, frozenset, dict)) else set(changed)
        for line, key in enumerate(after):
            if line >= len(before) or before[line] != key:
                self._painted.pop(key, None)
                self._refresh_row(line)
            elif key in changed:
                cells = self._cells_of(key)
                if cells != self._painted.get(key):
                    self._painted[key] = cells
                    self._refresh_row(line)
        for line in range(len(after), len(before)):
            self._refresh_row(line)  # rows gone from the end: blank lines now
        if len(self._painted) > 2 * len(after) + 16:  # rows that scrolled or moved away
            on_screen = set(after)
            self._painted = {k: v for k, v in self._painted.items() if k in on_screen}
        if before != after:
            self._viewport()

    def _resize_virtual(self) -> None:
        width = sum(c.width + 2 * CELL_PADDING for c in self.columns.values())
        self.virtual_size = Size(width, len(self.keys) + 1)

    def _refresh_row(self, line: int) -> None:
        """Repaint the screen line of the `line`-th row on screen."""
        self.refresh(Region(0, line + 1, self.size.width, 1))

    def _refresh_key(self, key: str) -> None:
        row = self._index.get(key)
        if row is not None:
            self._refresh_row(row - self.scroll_offset.y)

    # -- DataTable-like accessors (tests and screens read rows through them) ------------------------
    def get_row_index(self, key: str) -> int:
        return self._index[key]

    def get_row(self, key: str) -> list[Text]:
        return list(self._cells_of(key))

    def get_row_at(self, row: int) -> list[Text]:
        return self.get_row(self.keys[row])

    def get_column_index(self, column: str) -> int:
        return list(self.columns).index(column)

    def get_cell(self, key: str, column: str) -> Text:
        return self.get_row(key)[self.get_column_index(column)]

    def get_cell_at(self, coordinate: tuple[int, int]) -> Text:
        row, column = coordinate
        return self.get_row_at(row)[column]

    # -- drawing ------------------------------------------------------------------------------------
    def render_lines(self, crop: Region) -> list[Strip]:
        self._styles = None  # the focus or the theme may have changed since the last paint
        return super().render_lines(crop)

    def _row_styles(self) -> tuple[Style, Style, Style, Style]:
        if self._styles is None:
            cursor = self.get_component_rich_style("resource-table--cursor")
            self._styles = (self.rich_style, self.get_component_rich_style("resource-table--even-row"),
                            self.get_component_rich_style("resource-table--header"),
                            # the cursor's colours win over the cells' own, as in DataTable
                            Style.from_color(cursor.color, cursor.bgcolor) + Style(bold=cursor.bold))
        return self._styles

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        odd, even, header, cursor = self._row_styles()
        if y == 0:
            cells = tuple(c.label for c in self.columns.values())
            return self._strip(cells, width, header, None)
        row = self.scroll_offset.y + y - 1
        if row >= len(self.keys):
            return Strip.blank(width, odd)
        key = self.keys[row]
        cells = self._painted.get(key)
        if cells is None:
            cells = self._painted[key] = self._cells_of(key)
        self.rows_rendered += 1
        base = even if row % 2 == 0 else odd
        return self._strip(cells, width, base, cursor if row == self.cursor_row else None)

    def _strip(self, cells: tuple[Text, ...], width: int, base: Style, post: Style | None) -> Strip:
        line = Text(no_wrap=True, end="")
        pad = " " * CELL_PADDING
        for cell, column in zip(cells, self.columns.values()):
            if cell.cell_len != column.width or "\n" in cell.plain:
                cell = cell.copy()
                cell.plain = cell.plain.replace("\n", " ")
                cell.truncate(column.width, overflow="ellipsis", pad=True)
            line.append(pad)
            line.append_text(cell)
            line.append(pad)
        segments = Segment.apply_style(line.render(self.app.console, end=""), base, post)
        return Strip(segments).crop_extend(0, width, base if post is None else base + post)

    # -- the cursor ---------------------------------------------------------------------------------
    def move_cursor(self, *, row: int, animate: bool = False, scroll: bool = True) -> None:
        """Put the cursor on `row` (clamped) and bring it on screen."""
        if not self.keys:
            return
        row = min(max(row, 0), len(self.keys) - 1)
        old, self.cursor_row = self.cursor_row, row
        if old != row:
            top = self.scroll_offset.y
            self._refresh_row(old - top)
            self._refresh_row(row - top)
        if scroll:
            self._scroll_to_cursor()
        self._moved()

    def _scroll_to_cursor(self) -> None:
        top, height = self.scroll_offset.y, self.page_height
        if not height:
            return
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, force=True)
        elif self.cursor_row >= top + height:
            self.scroll_to(y=self.cursor_row - height + 1, animate=False, force=True)

    def action_cursor_up(self) -> None:
        self.move_cursor(row=self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(row=self.cursor_row + 1)

    def action_page_up(self) -> None:
        self.move_cursor(row=self.cursor_row - max(1, self.page_height - 1))

    def action_page_down(self) -> None:
        self.move_cursor(row=self.cursor_row + max(1, self.page_height - 1))

    def action_first(self) -> None:
        self.move_cursor(row=0)

    def action_last(self) -> None:
        self.move_cursor(row=len(self.keys) - 1)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is not None and offset.y >= 1:
            row = self.scroll_offset.y + offset.y - 1
            if row < len(self.keys):
                self.move_cursor(row=row)

    # -- what makes the rows on screen others ---------------------------------------------------------
    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if round(old_value) != round(new_value):
            self._viewport()

    def on_resize(self) -> None:
        self._styles = None
        self._scroll_to_cursor()
        self._viewport()


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

    class ViewportChanged(Message):
        """Other rows are on screen, or the rows are sorted on another column: what a screen
        samples can follow what is shown. Posted once the view has stayed put a moment, not on
        every tick or every line scrolled."""

        def __init__(self, view: "ResourceView", keys: tuple[str, ...], sort_column: str | None) -> None:
            super().__init__()
            self.view = view
            self.keys = keys  # in display order
            self.sort_column = sort_column

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
        self._shown: dict[str, Any] = {}  # rows that pass the filter: key -> sort value
        self._sort_of = self._sort_function()
        self._shown_columns: tuple[Column, ...] = self.columns
        self._widths: dict[str, int] = {c.key: c.width for c in self.columns}
        self._last_key: str | None = None
        # The object the operator put the cursor on, while a filter or refresh hides it: the
        # cursor returns to it when it is shown again, unless the operator moved on meanwhile.
        self._wanted: str | None = None
        self._placed: str | None = None
        self._title_text = ""
        self._viewport_timer: Timer | None = None
        # What the screen was last told; an empty table before its first rows is not news.
        self._viewport_told: tuple[frozenset[str], str | None] = (frozenset(), self.sort_column or None)

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter — enter keeps, esc clears", classes="hidden")
        yield ResourceTable(self._row_cells, self._cursor_moved, self._viewport_moved)

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
        self.items = items  # not copied: a tick over ten thousand VMs stays cheap
        touched = self.items.keys() | self._shown.keys() if changed is None else changed
        if self.selected:
            self.selected &= self.items.keys()
        self._sync(touched)

    def _matches(self, item: T) -> bool:
        return matches(self.filter_text, item, self.search_of, self.cells_of, {c.key for c in self.columns})

    def _row_cells(self, key: str) -> tuple[Text, ...]:
        """The cells of one row, in the order of the columns shown (made when it is painted)."""
        cells = self.cells_of(self.items[key])
        if self.selectable:
            cells[SELECT_COLUMN] = Text("●" if key in self.selected else " ", "bold cyan")
        return tuple(cells[c] for c in self._shown_keys())

    def _sort_function(self) -> Callable[[T], Any]:
        column = next((c for c in self.columns if c.key == self.sort_column and c.sort), None)
        return column.sort if column is not None else (lambda _item: 0)  # type: ignore[return-value]

    def _sync(self, keys: Iterable[str], *, reorder: bool = False) -> None:
        """Bring the rows of `keys` up to date: in or out of the filter, their sort value, their
        cells on screen. The rows are re-ordered only when one came or went or a sort value moved."""
        table = self.table
        cursor, index = self.cursor_key, table.cursor_row
        shown, sort_of, missing = self._shown, self._sort_of, object()
        filtering = bool(self.filter_text)
        for key in keys:
            item = self.items.get(key)
            if item is None or (filtering and not self._matches(item)):
                if shown.pop(key, missing) is not missing:
                    reorder = True
                continue
            value = sort_of(item)
            if shown.get(key, missing) != value:
                reorder = True
                shown[key] = value
        table.update(self._order() if reorder else None, keys)
        self._restore_cursor(cursor, index)
        self._update_title()

    def _order(self) -> list[str]:
        shown = self._shown
        if self.sort_column:
            order = sorted(shown, key=lambda k: (shown[k], k))
        else:  # no sort column: the order the items came in (a snapshot tree)
            order = [k for k in self.items if k in shown]
        if self.sort_reverse:
            order.reverse()
        return order

    def _restore_cursor(self, key: str | None, index: int) -> None:
        """Back on the same object; if it left the view, on the row that took its place."""
        table = self.table
        if self._wanted in self._shown:
            key, self._wanted = self._wanted, None
        elif key is not None and key not in self._shown and self._wanted is None:
            self._wanted = key
        if not table.row_count:
            self._announce()
            return
        row = table.get_row_index(key) if key in self._shown else min(max(index, 0), table.row_count - 1)
        self._placed = table.keys[row]
        if row != table.cursor_row:
            table.move_cursor(row=row)
        self._announce()

    def _announce(self) -> None:
        key = self.cursor_key
        if key != self._last_key:
            self._last_key = key
            self.post_message(self.Highlighted(self, key))

    def _cursor_moved(self) -> None:
        if self.cursor_key != self._placed:  # the operator moved it, not this view
            self._wanted = self._placed = None
        self._announce()

    # -- the rows on screen ----------------------------------------------------------------------
    def _viewport_moved(self) -> None:
        """The rows on screen may be others: tell the screen once they settle."""
        if self._viewport_timer is not None:
            self._viewport_timer.stop()
        self._viewport_timer = self.set_timer(VIEWPORT_SETTLE, self._tell_viewport)

    def _tell_viewport(self) -> None:
        self._viewport_timer = None
        keys = tuple(self.table.visible_keys())
        told = (frozenset(keys), self.sort_column or None)
        if told != self._viewport_told:
            self._viewport_told = told
            self.post_message(self.ViewportChanged(self, keys, told[1]))

    # -- what the cursor and the selection point at ---------------------------------------------
    @property
    def cursor_key(self) -> str | None:
        table = self.table
        return table.keys[table.cursor_row] if table.keys else None

    def move_to(self, key: str) -> None:
        if key in self._shown:
            self._wanted, self._placed = None, key
            self.table.move_cursor(row=self.table.get_row_index(key))

    def shown_keys(self) -> list[str]:
        """Keys of the rows that pass the filter, in display order."""
        return list(self.table.keys)

    def targets(self) -> list[str]:
        """The selection (in display order) if there is one, else the cursor row."""
        if self.selected:
            index = self.table._index
            return sorted(self.selected, key=lambda k: (index.get(k, len(index)), k))
        key = self.cursor_key
        return [key] if key is not None else []

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
        total, shown = len(self.items), len(self._shown)
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
        shown = [ShownColumn(SELECT_COLUMN, Text(" "), 1)] if self.selectable else []
        shown += [ShownColumn(c.key, self._label(c), self._widths[c.key]) for c in self._shown_columns]
        self.table.set_columns(shown)

    def on_resize(self) -> None:
        width = self.size.width - (3 if self.selectable else 0) - 2  # the scrollbar
        fitted, widths = self._fit(width)
        if (fitted, widths) != (self._shown_columns, self._widths):
            self._shown_columns, self._widths = fitted, widths
            self._build_columns()

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
            self._sync(self.items.keys() | self._shown.keys())

    def action_clear(self) -> None:
        box = self.query_one(Input)
        if box.value or box.has_focus or self.filter_text:
            box.value = ""
            box.add_class("hidden")
            self.set_filter("")
        elif self.selected:
            was, self.selected = self.selected, set()
            self._sync(was)
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
        shown = self._shown.keys()
        before = set(self.selected)
        self.selected = set() if shown <= self.selected else self.selected | shown
        self._sync(before ^ self.selected)

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
        self._sort_of = sort_of = self._sort_function()
        items = self.items
        self._shown = {k: sort_of(items[k]) for k in self._shown}
        self.table.relabel({c.key: self._label(c) for c in self._shown_columns})
        self.table.update(self._order(), ())
        self._restore_cursor(cursor, 0)
        self._viewport_moved()  # the sort column is part of what the screen is told

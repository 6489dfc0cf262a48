"""Keep a DataTable equal to {row key: cells}: remove rows that went, add new ones, and update
only the cells whose value changed (so a refresh does not repaint the whole table)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable


def sync_rows(table: DataTable, rows: dict[str, list[Text]]) -> None:
    keys = [c.key for c in table.columns.values()]
    for key in [k.value for k in table.rows if k.value not in rows]:
        table.remove_row(key)
    present = {k.value for k in table.rows}
    for key, cells in rows.items():
        if key not in present:
            table.add_row(*cells, key=key)
            continue
        for column, cell in zip(keys, cells):
            if table.get_cell(key, column) != cell:
                table.update_cell(key, column, cell)

"""Console output that stays readable without a terminal (log files, ``| tee``, nohup, CI).

rich lays a table out to the console width, 80 columns when the output is not a terminal, and shrinks the
columns to fit: numbers become ``0.17…`` and paths and hashes are cut. A table printed to a file is laid out
at its natural width instead (lines longer than 80 columns are better than cut numbers), and its cells never
wrap; on a terminal it is drawn as usual, but number columns are never cut (``no_wrap`` + minimum width).
"""

from __future__ import annotations


def _unshrinkable(table) -> None:
    """Give every column the width of its widest cell as a minimum, and no wrapping."""
    from rich.text import Text

    for col in table.columns:
        cells = [c.plain if isinstance(c, Text) else str(c) for c in col._cells]
        header = col.header.plain if isinstance(col.header, Text) else str(col.header)
        col.no_wrap = True
        col.min_width = max([len(x) for x in cells] + [min(len(header), 12)])


def print_table(console, table) -> None:
    """Print a rich ``Table`` on ``console``: natural width without a terminal, never cut numbers on one."""
    from rich.console import Console

    _unshrinkable(table)
    if console.is_terminal:
        console.print(table)
        return
    width = console.measure(table, options=console.options.update_width(100_000)).maximum
    plain = Console(file=console.file, width=max(width, 20), color_system=None, force_terminal=False,
                    soft_wrap=False, highlight=False)
    plain.print(table, crop=False)

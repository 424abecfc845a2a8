"""Console output that stays readable without a terminal (log files, ``| tee``, nohup, CI).

rich lays a table out to the console width, 80 columns when the output is not a terminal, and shrinks the
columns to fit: numbers become ``0.17…`` and paths and hashes are cut. A table printed to a file is laid out
at its natural width instead (lines longer than 80 columns are better than cut numbers), and its cells never
wrap; on a terminal it is drawn to the terminal's width, number columns never cut (``no_wrap`` + minimum
width) and long text cells folded, not cut.
"""

from __future__ import annotations

import re


_NUMBER = re.compile(r"^[-+]?(\d[\d.,]*(e[-+]?\d+)?%?|nan|inf|-)$", re.IGNORECASE)


def _unshrinkable(table) -> None:
    """Number columns get the width of their widest cell as a minimum and no wrapping (never ``0.17…``);
    the other columns fold long cells (hashes, paths) onto more lines instead of cutting them."""
    from rich.text import Text

    for col in table.columns:
        cells = [c.plain if isinstance(c, Text) else str(c) for c in col._cells]
        if cells and all(_NUMBER.match(x.strip()) for x in cells):
            header = col.header.plain if isinstance(col.header, Text) else str(col.header)
            col.no_wrap = True
            col.min_width = max([len(x) for x in cells] + [min(len(header), 12)])
        else:
            col.overflow = "fold"


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

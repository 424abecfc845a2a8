"""``python cli.py ...`` from a checkout: the same command line as the installed ``hrjax`` script
(:mod:`hrjax.cli`). Not installed: the wheel holds the ``hrjax`` package only."""

from hrjax.cli import app, main

__all__ = ["app", "main"]

if __name__ == "__main__":
    main()

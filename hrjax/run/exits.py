"""Exit codes of ``hrjax boost`` and the error that means "usage or set-up problem, nothing processed".

:data:`EXIT_OK` (0) every image done or skipped, :data:`EXIT_FAILED` (1) at least one image failed (the others
were still processed), :data:`EXIT_USAGE` (2) usage or setup error, nothing was processed (bad option, no
images found, missing/corrupt weights, unavailable device), :data:`EXIT_INTERRUPTED` (130) Ctrl-C.
"""

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A problem with the command line or the setup: reported with exit code 2 before any image is processed."""

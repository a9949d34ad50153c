"""Child processes that tests interrupt: started with SIGINT at its default disposition, so a
Ctrl-C reaches them even when the suite runs as a background job. A shell starts background
jobs with SIGINT ignored, children inherit that, and Python then installs no KeyboardInterrupt
handler: the test's SIGINT did nothing and it failed by timeout on a busy CI machine."""

from __future__ import annotations

import signal


def sigint_default() -> None:
    """A `preexec_fn`: SIGINT back to its default, as in an interactive terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

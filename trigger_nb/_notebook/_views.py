"""Which view a notebook object shows where (SPEC §8 fallbacks).

In a kernel (JupyterLab, Notebook 7, VS Code) runs and run lists show the live widget, whose
display bundle also carries static HTML and text. Terminal IPython and the CLI get text;
nbconvert and GitHub the static HTML (``_repr_html_``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._controls import Run


def in_kernel() -> bool:
    """True inside a Jupyter kernel (a frontend that renders widgets and updates displays)."""
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def display_run(run: Run) -> bool:
    """Show ``run``'s live task log widget if this is a kernel; False if not (the caller
    falls back to text/HTML)."""
    if not in_kernel():
        return False
    from ._widget import TaskLog

    TaskLog(run).display()
    return True

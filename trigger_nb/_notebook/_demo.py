"""The job ``trigger-nb demo`` runs (also the first cells of ``notebooks/quickstart.ipynb``), and
the notebooks ``trigger-nb demo --notebook NAME`` runs instead."""

from __future__ import annotations

from pathlib import Path

from .._exceptions import ConfigError

SETUP_CELL = "%load_ext trigger_nb"

JOB_CELL = '''\
%%job quickstart --payload {"city": "Paris"} --wait --timeout 60
print("code outside tasks runs on every execution")

forecast = await io.run_task(
    "fetch-forecast",
    lambda task: {"city": payload["city"], "temp_c": 21, "attempt": task.attempts},
    name="Fetch forecast",
)

async def enrich(task, io):
    # Tasks started inside a task are its children: their keys are scoped by the parent.
    feels = await io.run_task("feels-like", lambda: forecast["temp_c"] - 2)
    return {**forecast, "feels_like_c": feels}

report = await io.run_task("enrich", enrich, name="Enrich")
await io.wait("cool-down", 0.5)  # the run suspends here, then resumes by replay
return {"summary": f"{report['city']}: {report['temp_c']} °C (feels like {report['feels_like_c']} °C)"}
'''

CELLS = [SETUP_CELL, JOB_CELL]


#: The notebooks of the source checkout (``notebooks/`` beside the package).
NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"


def notebook_path(name: str) -> Path:
    """``notebooks/NAME.ipynb`` (``NAME`` with or without ``.ipynb``); ``ConfigError`` naming
    the notebooks there are when there is no such notebook."""
    path = NOTEBOOKS_DIR / (name if name.endswith(".ipynb") else f"{name}.ipynb")
    if not path.is_file():
        found = sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb"))
        raise ConfigError(
            f"No notebook {name!r} in {NOTEBOOKS_DIR}; there are: {', '.join(found) or 'none'} "
            "(the notebooks come with the source checkout)."
        )
    return path

"""The job ``trigger-nb demo`` runs (also the first cells of ``notebooks/quickstart.ipynb``)."""

from __future__ import annotations

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

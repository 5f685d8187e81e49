"""The engine: task/run state machine, one execution's replay, the runner, and the notice bus.

May import: the store and the shared leaves only — never ``_io``, ``_events``, ``_receiver``,
``_notebook``, the client or the run handle (views learn of progress from the bus).
"""

from ._control import Canceled, ControlFlow, Suspend, is_control_flow
from ._execution import CALLBACK_TIMEOUT_MESSAGE, Execution, current_parent
from ._jobs import JobDefinition, make_context, new_run_record
from ._reach import code_changed_ids, prune_unreached, unreached_tasks
from ._requests import request_resume, request_retry
from ._runner import Runner
from ._spec import TaskHandle, TaskSpec
from ._states import RUN_FINISHED, TASK_FINISHED, RunStatus, TaskStatus

__all__ = [
    "CALLBACK_TIMEOUT_MESSAGE",
    "RUN_FINISHED",
    "TASK_FINISHED",
    "Canceled",
    "ControlFlow",
    "Execution",
    "JobDefinition",
    "RunStatus",
    "Runner",
    "Suspend",
    "TaskHandle",
    "TaskSpec",
    "TaskStatus",
    "current_parent",
    "is_control_flow",
    "make_context",
    "new_run_record",
    "code_changed_ids",
    "prune_unreached",
    "unreached_tasks",
    "request_resume",
    "request_retry",
]

"""The notebook layer: ``%%job`` / ``%job`` magics, argument parsing, the body compiler,
task-log views (text, HTML, live display), the notebook runner and the demo.

May import: anything below it — the client (the magic is the client's user), the run handle,
the engine's bus for views. Nothing below imports it. No re-exports, so ``import trigger_nb``
stays light.
"""

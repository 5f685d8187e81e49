"""Notebook views of runs: the task-log widget, the runs table, their static fallbacks."""

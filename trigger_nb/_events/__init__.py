"""Durable events: the event log, EventFilter matching, triggers, and the scheduler.

May import: the engine, the store and the shared leaves — never the client (it hands each part
its collaborators), ``_io``, the receiver or the notebook layer. No re-exports here, so importing
the pure filter matcher loads nothing else.
"""

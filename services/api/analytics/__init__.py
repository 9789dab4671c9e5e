"""Analytics of an experiment for the dashboard and ``/v1/.../analytics``: best value against
cumulative cost, parameter importance, cheap-vs-full-cost rank correlation, per-task progress
and training curves.

`dataset` loads an experiment's observations once into frozen `Point`s; `history`,
`importance` and `correlation` are pure functions of a `Dataset` (no I/O); `summary` and
`curves` read the store for the rest (suggestions with their runs, checkpoints).
"""

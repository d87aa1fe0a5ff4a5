"""Text arrays sent inside other arrays, as PostgreSQL array literals.

asyncpg sends a list as an array, but not a list of lists of different lengths (a row's copies
or tags within a batch's column): such a column goes as ``text[]`` of literals, each cast back
with ``::text[]`` by PostgreSQL's own array parser, which is cheaper than a JSON array taken
apart by a subquery a row.
"""

from __future__ import annotations

from collections.abc import Iterable


def text_array_literal(values: Iterable[str]) -> str:
    """The PostgreSQL literal of a one-dimensional ``text[]`` holding ``values``: every element
    quoted, so commas, braces, spaces and the word NULL stay text."""
    quoted = (v.replace("\\", "\\\\").replace('"', '\\"') for v in values)
    return "{" + ",".join(f'"{v}"' for v in quoted) + "}"

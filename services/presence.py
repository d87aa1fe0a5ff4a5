"""Whether an agent can answer a customer now: someone whose console is open (its pages call
``/console/presence`` every minute while shown) and who works the department the customer's
conversation goes to. Asked by channels whose customers wait for an answer (web chat's
"we are offline, leave an address"), through ``channels.base.Presence``."""

from __future__ import annotations

import time

import asyncpg

from schemas import Identity

#: An agent counts as present this long after their console last called (two heartbeats).
PRESENT_SECONDS = 150
#: Answers are kept this long (a site's visitors ask at every page load).
CACHE_SECONDS = 10.0

#: The department of the customer's latest routed message; agents of it (or supervisors and
#: admins, who see every queue) present; with no department known, anyone present.
_ANSWERING = """
WITH customer AS (
    SELECT coalesce(c.merged_into, c.id) AS id FROM identities i
    JOIN customers c ON c.id = i.customer_id
    WHERE i.type = $1 AND i.scope = $2 AND i.value = $3
),
department AS (
    SELECT coalesce(
        (SELECT r.department FROM routing_decisions r, customer
         WHERE r.customer_id = customer.id ORDER BY r.routed_at DESC LIMIT 1),
        $4::text
    ) AS name
)
SELECT EXISTS (
    SELECT 1 FROM console_sessions s
    JOIN console_users u ON u.id = s.user_id, department
    WHERE s.last_seen > now() - make_interval(secs => $5) AND s.expires_at > now()
      AND NOT u.disabled
      AND (department.name IS NULL OR department.name = ANY(u.departments)
           OR u.role IN ('supervisor', 'admin'))
)
"""


class PgPresence:
    """``channels.base.Presence`` over the console's sessions in PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._cache: dict[tuple[str, str | None], tuple[float, bool]] = {}

    async def answering(self, who: Identity, department: str | None = None) -> bool:
        """Whether an agent who would get ``who``'s messages is present (cached briefly)."""
        key = (who.key, department)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        try:
            async with self._pool.acquire() as conn:
                found = bool(
                    await conn.fetchval(
                        _ANSWERING,
                        who.type.value,
                        who.scope,
                        who.value,
                        department,
                        PRESENT_SECONDS,
                    )
                )
        except asyncpg.PostgresError as exc:  # the channel knows OSError only
            raise OSError(f"presence unknown: {exc}") from exc
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now, found)
        return found

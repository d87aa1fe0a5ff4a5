"""Identity resolution rules, on the real PostgreSQL: match, merge, protect, split, link."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from schemas import Identity, Interaction, UnifiedEvent
from schemas.events import utcnow
from services.customers import store as customers
from services.identity import manual, profile
from services.identity.resolver import Resolution, resolve
from services.identity.rules import IdentityRules, load_rules
from services.processors.timeline import write_events
from tests.support import email, eventually, phone, unique

RULES = IdentityRules()


def ids(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    """Identity dicts from (type, value) pairs; scoped types get scope 'acct'."""
    return [
        {"type": t, "value": v, **({"scope": "acct"} if t in {"facebook", "telegram"} else {})}
        for t, v in pairs
    ]


def event(*pairs: tuple[str, str], **fields: Any) -> Interaction:
    """An interaction carrying these identities."""
    return Interaction.create(
        channel=fields.pop("channel", "api"),
        direction="inbound",
        kind="message",
        identities=ids(*pairs),
        provider_message_id=unique("e"),
        text="hi",
        **fields,
    )


async def ingest(
    pool: asyncpg.Pool, *events: Interaction, rules: IdentityRules = RULES
) -> Resolution:
    """Resolve and project, as the unify and project agents do."""
    async with pool.acquire() as conn:
        resolution = await resolve(conn, list(events), rules)
        await write_events(
            conn,
            [
                UnifiedEvent(event_id=e.event_id, customer_id=c, unified_at=utcnow(), interaction=e)
                for e, c in zip(events, resolution.customers, strict=True)
            ],
        )
    return resolution


async def owner(pool: asyncpg.Pool, event_id: uuid.UUID) -> uuid.UUID:
    return await pool.fetchval("SELECT customer_id FROM timeline WHERE event_id = $1", event_id)


async def review(pool: asyncpg.Pool, customer: uuid.UUID) -> list[str]:
    async with pool.acquire() as conn:
        found = await customers.customer(conn, customer)
    return found["review"] if found else []


async def test_new_value_creates_a_customer_and_a_known_one_attaches(pool: asyncpg.Pool) -> None:
    alice = email("alice")
    first = await ingest(pool, event(("email", alice)))
    second = await ingest(pool, event(("email", alice.upper())))
    assert first.customers == second.customers
    third = await ingest(pool, event(("email", email())))
    assert third.customers != first.customers


async def test_resolution_joins_the_callers_transaction(pool: asyncpg.Pool) -> None:
    """Inside the unify agent's transaction, resolution adds no savepoint round trips and its
    writes commit or roll back with the caller's; alone, it commits on its own."""
    first, second = event(("email", email())), event(("email", email()))
    async with pool.acquire() as conn:
        sent: list[str] = []
        conn.add_query_logger(lambda record: sent.append(record.query))
        tx = conn.transaction()
        await tx.start()
        [rolled_back] = (await resolve(conn, [first], RULES)).customers
        await tx.rollback()
        assert not [q for q in sent if "SAVEPOINT" in q.upper()]
        assert not await conn.fetchval("SELECT count(*) FROM customers WHERE id = $1", rolled_back)
        [kept] = (await resolve(conn, [second], RULES)).customers
        assert not conn.is_in_transaction()
    assert await pool.fetchval("SELECT count(*) FROM customers WHERE id = $1", kept) == 1


async def test_a_batch_resolves_in_the_same_few_statements_whatever_its_size(
    pool: asyncpg.Pool,
) -> None:
    """Resolution works set-wise: lock the values, lock the customers they name, read, write
    everything decided in one statement: as many statements for 4 events as for 60, each of
    them known people seen with a new phone or new people with two identities."""
    known = [email() for _ in range(30)]
    await ingest(pool, *(event(("email", value)) for value in known))

    def batch(n: int) -> list[Interaction]:
        return [event(("email", known[i]), ("phone", phone())) for i in range(n)] + [
            event(("email", email()), ("phone", phone())) for _ in range(n)
        ]

    async def statements(interactions: list[Interaction]) -> list[str]:
        sent: list[str] = []

        def logger(record: Any) -> None:
            sent.append(record.query)

        async with pool.acquire() as conn:
            conn.add_query_logger(logger)
            try:
                resolution = await resolve(conn, interactions, RULES)
            finally:
                conn.remove_query_logger(logger)
        assert len(set(resolution.customers)) == len(interactions)  # nobody merged by mistake
        return sent

    large_batch = batch(30)
    small, large = await statements(batch(2)), await statements(large_batch)
    assert len(small) == len(large)
    assert [q.split()[0].rstrip(";").upper() for q in large] == [
        "BEGIN",  # asyncpg's transaction
        "SELECT",  # advisory locks on the values
        "SELECT",  # the customers they name, FOR NO KEY UPDATE
        "WITH",  # the read under their locks
        "WITH",  # every write
        "COMMIT",
    ]
    # and the one write holds everything: each phone is its email's customer's, with an edge
    for interaction in large_batch:
        mail, mobile = (i.value for i in interaction.identities)
        owners = await pool.fetch(
            "SELECT DISTINCT customer_id FROM identities WHERE value = ANY($1::text[])",
            [mail, mobile],
        )
        assert len(owners) == 1
        edges = await pool.fetchval(
            "SELECT count(*) FROM identity_edges WHERE a_value = $1 AND b_value = $2", mail, mobile
        )
        assert edges == 1


async def test_a_redelivered_batch_resolves_to_the_same_customers_and_writes_nothing_new(
    pool: asyncpg.Pool,
) -> None:
    """The unify agent commits resolution before the timeline: a crash between the two
    redelivers the batch, whose resolution must then be a no-op."""
    alice, bob = email("alice"), phone()
    batch = [
        event(("email", alice)),
        event(("email", alice), ("phone", bob)),  # links Bob's phone to Alice
        event(("phone", bob)),
        event(("email", email())),
    ]
    values = [alice, bob, *(i.value for i in batch[3].identities)]

    async def written() -> dict[str, Any]:
        """What resolution wrote about this batch's values and customers."""
        return {
            "identities": await pool.fetch(
                "SELECT type, value, customer_id FROM identities WHERE value = ANY($1)"
                " ORDER BY value",
                values,
            ),
            "log": await pool.fetchval(
                "SELECT count(*) FROM identity_link_log WHERE value = ANY($1)", values
            ),
            "edges": await pool.fetchval(
                "SELECT count(*) FROM identity_edges WHERE a_value = ANY($1) OR b_value = ANY($1)",
                values,
            ),
        }

    first = await ingest(pool, *batch)
    before = await written()
    assert before["log"] > 0 and before["edges"] > 0
    again = await ingest(pool, *batch)
    assert again.customers == first.customers
    assert again.events == []
    assert await written() == before


async def test_several_matches_merge_into_the_oldest_with_history(pool: asyncpg.Pool) -> None:
    mail, tel = email("m"), phone()
    by_mail = event(("email", mail))
    by_phone = event(("phone", tel))
    [oldest] = (await ingest(pool, by_mail)).customers
    [younger] = (await ingest(pool, by_phone)).customers
    bridge = event(("phone", tel), ("email", mail))
    result = await ingest(pool, bridge)
    assert result.customers == [oldest]
    [merged] = result.events
    assert merged.type == "customer.merged"
    assert merged.customer_id == oldest and merged.merged_ids == [younger]
    assert merged.caused_by == bridge.event_id
    for e in (by_mail, by_phone, bridge):
        assert await owner(pool, e.event_id) == oldest
    async with pool.acquire() as conn:
        alias = await customers.customer(conn, younger)
        assert alias["id"] == str(oldest) and alias["requested_id"] == str(younger)
        assert str(younger) in alias["aliases"]
        log = await conn.fetch(
            "SELECT action, rule, customer_id, other_customer, event_id, actor, decision"
            " FROM identity_link_log WHERE value = $1 ORDER BY seq",
            tel,
        )
    assert [(r["action"], r["rule"]) for r in log] == [("link", "new_identity"), ("merge", "merge")]
    moved = log[-1]
    assert (moved["customer_id"], moved["other_customer"]) == (oldest, younger)
    assert (moved["event_id"], moved["actor"], moved["decision"]) == (
        bridge.event_id,
        "resolver",
        "accepted",
    )


async def test_events_unified_before_a_merge_land_on_the_survivor(pool: asyncpg.Pool) -> None:
    mail, tel = email("late"), phone()
    [a] = (await ingest(pool, event(("email", mail)))).customers
    late = event(("phone", tel))
    async with pool.acquire() as conn:
        [b] = (await resolve(conn, [late], RULES)).customers  # unified, not yet projected
    await ingest(pool, event(("email", mail), ("phone", tel)))
    async with pool.acquire() as conn:
        await write_events(
            conn,
            [
                UnifiedEvent(
                    event_id=late.event_id, customer_id=b, unified_at=utcnow(), interaction=late
                )
            ],
        )
    assert await owner(pool, late.event_id) == a


async def _waits_for_a_lock(pool: asyncpg.Pool, pid: int) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
        )
    )


async def _merged_by_an_agent(
    conn: asyncpg.Connection, a: uuid.UUID, b: uuid.UUID, mail: str, tel: str
) -> None:
    await manual.merge(conn, a, b, "same person", "agent", RULES)


async def _merged_by_the_resolver(
    conn: asyncpg.Connection, a: uuid.UUID, b: uuid.UUID, mail: str, tel: str
) -> None:
    resolution = await resolve(conn, [event(("email", mail), ("phone", tel))], RULES)
    assert resolution.customers == [a]  # an event carrying both: b merged into a


@pytest.mark.parametrize(
    "merge", [_merged_by_an_agent, _merged_by_the_resolver], ids=["manual", "resolver"]
)
async def test_events_written_while_a_merge_holds_their_customer_land_on_the_survivor(
    pool: asyncpg.Pool, merge: Any
) -> None:
    """A timeline write for a customer being merged (by an agent, or by the resolver) waits
    for the merge's row locks, then follows the alias the merge left (the row it locked is
    re-read once the merge commits)."""
    mail, tel = email("bridge"), phone()
    [a] = (await ingest(pool, event(("email", mail)))).customers
    late = event(("phone", tel))
    async with pool.acquire() as conn:
        [b] = (await resolve(conn, [late], RULES)).customers  # unified, not yet projected
    unified = UnifiedEvent(
        event_id=late.event_id, customer_id=b, unified_at=utcnow(), interaction=late
    )
    async with pool.acquire() as merging, pool.acquire() as writing:
        transaction = merging.transaction()
        await transaction.start()
        await merge(merging, a, b, mail, tel)
        writer = writing.get_server_pid()
        write = asyncio.create_task(write_events(writing, [unified]))
        await eventually(lambda: _waits_for_a_lock(pool, writer))
        assert not write.done()
        await transaction.commit()
        assert await write == 1
    assert await owner(pool, late.event_id) == a


async def test_a_resolution_without_merges_does_not_hold_up_its_customers_timeline(
    pool: asyncpg.Pool,
) -> None:
    """A batch resolved while the one before it is being written: the resolution locks its
    customers against other resolutions, not against timeline writes, which go on at once."""
    mail = email("busy")
    [a] = (await ingest(pool, event(("email", mail)))).customers
    written = event(("email", mail))
    unified = UnifiedEvent(
        event_id=written.event_id, customer_id=a, unified_at=utcnow(), interaction=written
    )
    async with pool.acquire() as resolving, pool.acquire() as writing:
        holding = resolving.transaction()
        await holding.start()
        assert (await resolve(resolving, [event(("email", mail))], RULES)).customers == [a]
        # a lock wait would hang here until the resolution commits (the guard ends the test)
        assert await asyncio.wait_for(write_events(writing, [unified]), 30) == 1
        await holding.commit()
    assert await owner(pool, written.event_id) == a


async def test_blocked_values_never_glue_strangers(pool: asyncpg.Pool) -> None:
    first, second = phone(), phone()
    [a] = (await ingest(pool, event(("phone", first), ("email", "info@acme-shop.fr")))).customers
    [b] = (await ingest(pool, event(("phone", second), ("email", "info@acme-shop.fr")))).customers
    assert a != b
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT decision, rule, reason FROM identity_link_log"
            " WHERE value = 'info@acme-shop.fr' AND action = 'block'"
        )
        matching = await conn.fetchval(
            "SELECT matching FROM identities WHERE value = 'info@acme-shop.fr'"
        )
    assert rows and rows[0]["decision"] == "refused" and rows[0]["reason"].startswith("re:")
    assert matching == "blocked"


async def test_limit_per_type_refuses_a_merge_and_flags_both(pool: asyncpg.Pool) -> None:
    u1, u2, mail = unique("u"), unique("u"), email("lim")
    [a] = (await ingest(pool, event(("user_id", u1), ("email", mail)))).customers
    [b] = (await ingest(pool, event(("user_id", u2)))).customers
    result = await ingest(pool, event(("email", mail), ("user_id", u2)))
    assert result.events == []
    assert a != b
    assert any("more than 1 user_id" in r for r in await review(pool, a))
    assert any("more than 1 user_id" in r for r in await review(pool, b))
    async with pool.acquire() as conn:
        refused = await conn.fetchval(
            "SELECT count(*) FROM identity_link_log WHERE value = $1 AND decision = 'refused'"
            " AND rule = 'limit'",
            u2,
        )
    assert refused == 1


async def test_limit_refuses_linking_one_identity_too_many(pool: asyncpg.Pool) -> None:
    rules = IdentityRules(limits={"email": 1})
    first, second = email("one"), email("two")
    [a] = (await ingest(pool, event(("email", first)), rules=rules)).customers
    [again] = (
        await ingest(pool, event(("email", first), ("email", second)), rules=rules)
    ).customers
    assert again == a
    async with pool.acquire() as conn:
        holder = await conn.fetchval("SELECT customer_id FROM identities WHERE value = $1", second)
    assert holder != a
    assert any("refused" in r for r in await review(pool, a))


async def test_a_value_seen_with_too_many_customers_becomes_shared(pool: asyncpg.Pool) -> None:
    landline = phone()
    people = [email("fam") for _ in range(3)]
    [c1] = (await ingest(pool, event(("email", people[0]), ("phone", landline)))).customers
    [c2] = (await ingest(pool, event(("email", people[1])))).customers
    # the second member of the family uses the landline: seen with 2 customers, merged
    merged = await ingest(pool, event(("email", people[1]), ("phone", landline)))
    assert merged.customers == [c1]
    [c3] = (await ingest(pool, event(("email", people[2])))).customers
    third = await ingest(pool, event(("email", people[2]), ("phone", landline)))
    assert third.customers == [c3]  # no merge: the landline is shared now
    assert third.events == []
    async with pool.acquire() as conn:
        matching = await conn.fetchval("SELECT matching FROM identities WHERE value = $1", landline)
    assert matching == "shared"
    assert any("shared identity phone" in r for r in await review(pool, c3))
    assert any("shared identity phone" in r for r in await review(pool, c1))
    # a shared value no longer attracts anyone
    [c4] = (await ingest(pool, event(("phone", landline), ("email", email("new"))))).customers
    assert c4 not in (c1, c3)
    assert c2 != c1


async def test_merge_cap_flags_instead_of_merging(pool: asyncpg.Pool) -> None:
    rules = IdentityRules(merge_cap=1, shared_after=10)
    hub, a, b = email("hub"), phone(), phone()
    [keeper] = (await ingest(pool, event(("email", hub)), rules=rules)).customers
    await ingest(pool, event(("phone", a)), rules=rules)
    assert (await ingest(pool, event(("email", hub), ("phone", a)), rules=rules)).events
    [other] = (await ingest(pool, event(("phone", b)), rules=rules)).customers
    result = await ingest(pool, event(("email", hub), ("phone", b)), rules=rules)
    assert result.events == []
    flags = await review(pool, keeper)
    assert any("more than 1 merges" in r for r in flags), flags
    assert other != keeper


async def test_late_link_joins_an_anonymous_chat(pool: asyncpg.Pool) -> None:
    visitor, mail = unique("visitor"), email("chat")
    [known] = (await ingest(pool, event(("email", mail)))).customers
    chat = event(("webchat_visitor", visitor), channel="webchat")
    [anonymous] = (await ingest(pool, chat)).customers
    assert anonymous != known
    await ingest(pool, event(("webchat_visitor", visitor), ("email", mail), channel="webchat"))
    assert await owner(pool, chat.event_id) == known


async def test_split_undoes_a_merge_and_gives_events_back(pool: asyncpg.Pool) -> None:
    mail, tel = email("undo"), phone()
    by_mail, by_phone = event(("email", mail)), event(("phone", tel))
    [a] = (await ingest(pool, by_mail)).customers
    [b] = (await ingest(pool, by_phone)).customers
    bridge = event(("email", mail), ("phone", tel))
    await ingest(pool, bridge)
    async with pool.acquire() as conn:
        split = await manual.split(
            conn, a, [Identity(type="phone", value=tel)], "two different people", "agent:test"
        )
    assert split.type == "customer.split" and split.new_ids == [b]  # the merged-away id lives
    assert await owner(pool, by_phone.event_id) == b
    assert await owner(pool, by_mail.event_id) == a
    assert await owner(pool, bridge.event_id) == a  # its first identity stayed
    # an agent's decision outlives the rules: the same pair does not merge again
    again = await ingest(pool, event(("email", mail), ("phone", tel)))
    assert again.events == []
    async with pool.acquire() as conn:
        status = await conn.fetchval("SELECT status FROM customers WHERE id = $1", b)
        refused = await conn.fetchval(
            "SELECT rule FROM identity_link_log WHERE value = $1 AND decision = 'refused'", tel
        )
    assert status == "active"
    assert refused == "manual_separation"


async def test_split_refuses_what_it_cannot_do(pool: asyncpg.Pool) -> None:
    mail = email("solo")
    [a] = (await ingest(pool, event(("email", mail)))).customers
    async with pool.acquire() as conn:
        with pytest.raises(manual.ManualError, match="at least one"):
            await manual.split(conn, a, [Identity(type="email", value=mail)], "why", "t")
        with pytest.raises(manual.ManualError, match="must belong"):
            await manual.split(conn, a, [Identity(type="email", value=email())], "why", "t")


async def test_manual_link_takes_an_identity_and_its_events(pool: asyncpg.Pool) -> None:
    mine, theirs, tel = email("mine"), email("theirs"), phone()
    [a] = (await ingest(pool, event(("email", mine)))).customers
    call = event(("phone", tel), ("email", theirs))
    [b] = (await ingest(pool, call)).customers
    async with pool.acquire() as conn:
        taken = await manual.link(
            conn,
            a,
            Identity(type="phone", value=tel),
            "the customer told us on the phone",
            "agent:test",
        )
    assert taken == b
    assert await owner(pool, call.event_id) == a
    # the rules do not undo it: the other identity of that call stays apart
    result = await ingest(pool, event(("phone", tel), ("email", theirs)))
    assert result.customers == [a] and result.events == []


async def test_manual_merge_overrides_protection(pool: asyncpg.Pool) -> None:
    u1, u2 = unique("u"), unique("u")
    [a] = (await ingest(pool, event(("user_id", u1)))).customers
    [b] = (await ingest(pool, event(("user_id", u2)))).customers
    async with pool.acquire() as conn:
        merged = await manual.merge(conn, a, b, "same person, two CRM accounts", "agent:t", RULES)
        found = await customers.customer(conn, b)
    assert merged.merged_ids == [b]
    assert found["id"] == str(a)
    assert {i["value"] for i in found["identities"]} == {u1, u2}


async def test_profile_fields_survive_a_merge_by_rule(pool: asyncpg.Pool) -> None:
    mail, tel = email("prof"), phone()
    [a] = (await ingest(pool, event(("email", mail)))).customers
    [b] = (await ingest(pool, event(("phone", tel)))).customers
    async with pool.acquire() as conn:
        await profile.update(
            conn,
            a,
            profile.ProfileUpdate(
                name="Alice Martin", language="fr", attributes={"tier": "gold", "shoe": 38}
            ),
            utcnow(),
        )
        await asyncio.sleep(0.01)
        await profile.update(
            conn,
            b,
            profile.ProfileUpdate(
                name="A. Martin",
                language="en",
                birth_date="1990-04-01",
                attributes={"tier": "silver"},
            ),
            utcnow(),
        )
    await ingest(pool, event(("email", mail), ("phone", tel)))
    async with pool.acquire() as conn:
        merged = await profile.read(conn, a)
        gone = await profile.read(conn, b)
    assert merged["name"] == "Alice Martin"  # non_empty: the survivor's
    assert merged["language"] == "en"  # most_recent
    assert merged["birth_date"].isoformat() == "1990-04-01"  # only one had it
    assert merged["attributes"] == {"tier": "silver", "shoe": 38}
    assert gone is None


async def test_a_chain_of_merges_in_one_batch_ends_on_the_last_survivor(
    pool: asyncpg.Pool,
) -> None:
    """c merges into b, then b into a, within one batch: c's identities, events and profile
    reach a, though b had no profile to pass them through."""
    user, tel, mail, other_mail = unique("u"), phone(), email("chain"), email("chain-b")
    [a] = (await ingest(pool, event(("user_id", user)))).customers
    [b] = (await ingest(pool, event(("phone", tel), ("email", other_mail)))).customers
    [c] = (await ingest(pool, event(("email", mail)))).customers
    async with pool.acquire() as conn:
        await profile.update(
            conn, a, profile.ProfileUpdate(name="Ann Lee", language="fr"), utcnow()
        )
        await asyncio.sleep(0.01)
        later = profile.ProfileUpdate(
            language="de", birth_date="1985-02-03", attributes={"shoe": 40}
        )
        await profile.update(conn, c, later, utcnow())
    first = event(("phone", tel), ("email", mail))
    second = event(("user_id", user), ("email", other_mail))
    result = await ingest(pool, first, second)
    assert result.customers == [a, a]
    [merged] = result.events
    assert merged.customer_id == a and set(merged.merged_ids) == {b, c}
    async with pool.acquire() as conn:
        survivor = await profile.read(conn, a)
        passed_through, gone = await profile.read(conn, b), await profile.read(conn, c)
        found = await customers.customer(conn, c)
    assert found["id"] == str(a)
    assert {i["value"] for i in found["identities"]} == {user, tel, mail, other_mail}
    assert survivor["name"] == "Ann Lee"  # non_empty: the survivor's
    assert survivor["language"] == "de"  # most_recent: c's, set later than a's
    assert survivor["birth_date"].isoformat() == "1985-02-03"  # only c had it
    assert survivor["attributes"] == {"shoe": 40}
    assert passed_through is None and gone is None


async def test_consent_follows_the_merge_newest_statement_wins(pool: asyncpg.Pool) -> None:
    mail, tel = email("cons"), phone()
    withdraw = {"channel": "sms", "purpose": "marketing", "granted": False}
    [a] = (await ingest(pool, event(("email", mail)))).customers
    [b] = (await ingest(pool, event(("phone", tel)))).customers
    from schemas import ConsentChange
    from services.customers import consent

    async with pool.acquire() as conn:
        await consent.apply_changes(
            conn, [consent.ConsentWrite(b, ConsentChange(**withdraw), utcnow())]
        )
    await ingest(pool, event(("email", mail), ("phone", tel)))
    async with pool.acquire() as conn:
        book = await consent.load(conn, [a])
        from schemas import Purpose

        assert not book.allows(a, "sms", Purpose.MARKETING)
        assert book.allows(a, "email", Purpose.MARKETING)


async def test_same_new_person_at_once_on_two_connections_is_one_customer(
    pool: asyncpg.Pool,
) -> None:
    for _ in range(5):
        mail, tel = email("race"), phone()
        first = event(("email", mail))
        second = event(("phone", tel), ("email", mail))
        results = await asyncio.gather(ingest(pool, first), ingest(pool, second))
        owners = {await owner(pool, first.event_id), await owner(pool, second.event_id)}
        assert len(owners) == 1, results


async def test_crossing_batches_never_deadlock(pool: asyncpg.Pool) -> None:
    people = [(email("dl"), phone()) for _ in range(20)]
    forward = [event(("email", m), ("phone", p)) for m, p in people]
    backward = [event(("phone", p), ("email", m)) for m, p in reversed(people)]
    await asyncio.wait_for(asyncio.gather(ingest(pool, *forward), ingest(pool, *backward)), 30)
    for (m, _), e in zip(people, forward, strict=True):
        other = backward[len(people) - 1 - people.index((m, _))]
        assert await owner(pool, e.event_id) == await owner(pool, other.event_id)


def test_rules_load_from_yaml_and_reject_mistakes(tmp_path: Path) -> None:
    good = tmp_path / "rules.yaml"
    good.write_text(
        "blocked:\n  email: ['re:^noreply@', 'test@example.org']\n"
        "limits: {user_id: 1}\nshared_after: 4\n"
    )
    rules = load_rules(good)
    assert rules.shared_after == 4
    assert rules.blocked_rule(Identity(type="email", value="noreply@shop.fr")) == "re:^noreply@"
    assert rules.blocked_rule(Identity(type="email", value="Test@Example.org"))
    assert rules.blocked_rule(Identity(type="email", value="alice@example.org")) is None
    bad = tmp_path / "bad.yaml"
    bad.write_text("blocked:\n  email: ['re:([unclosed']\n")
    with pytest.raises(ValueError, match=r"unterminated|missing"):
        load_rules(bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("merge_limit: 3\n")
    with pytest.raises(ValueError, match="merge_limit"):
        load_rules(unknown)

"""The omnihub command line (typer)."""

from __future__ import annotations

import asyncio
import json
import logging
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from services import tracing
from services.api.scopes import Role, Scope
from services.config import Settings
from services.console.cli import app as user_app
from services.routing.cli import app as rules_app

app = typer.Typer(
    help="omnihub: one timeline per customer across every channel.", no_args_is_help=True
)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(rules_app, name="rules")
app.add_typer(user_app, name="user")
console = Console()


class ComponentName(StrEnum):
    """Components `omnihub run` can start."""

    API = "api"
    PROCESSORS = "processors"
    DISPATCHER = "dispatcher"
    CHANNEL = "channel"


def _settings() -> Settings:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return settings


@app.command()
def up() -> None:
    """Start the embedded stack (unless configured) and every component; Ctrl-C stops all."""
    from services.supervisor import up as run_up

    raise typer.Exit(run_up(_settings(), out=lambda text: console.print(text, soft_wrap=True)))


@app.command()
def run(
    component: ComponentName,
    name: Annotated[str | None, typer.Argument(help="the adapter, for `run channel`")] = None,
) -> None:
    """Run one component against KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL (for deployment).

    `omnihub run channel twilio` serves that adapter alone (Kafka only; a channel holding
    client sessions also reads customer keys from DATABASE_URL).
    """
    settings = _settings()
    service = f"omnihub-{component.value}" + (f"-{name}" if name else "")
    tracing.setup(settings.otlp_endpoint, service)  # spans only with an endpoint configured
    if component is ComponentName.CHANNEL:
        from channels import registry

        if not name:
            raise typer.BadParameter("name the adapter: omnihub run channel <name>")
        try:
            found = registry.manifest(name)
        except KeyError as exc:
            raise typer.BadParameter(str(exc.args[0])) from None
        if found.with_hub_api:
            raise typer.BadParameter(f"{name} is part of the hub's API: omnihub run api")
        runtime = settings.with_runtime()
        bootstrap = runtime.kafka_bootstrap_servers
        if not bootstrap:
            raise typer.BadParameter("KAFKA_BOOTSTRAP_SERVERS is not set")
        # Kafka only, but a channel holding client sessions opens the replies relayed to it
        # with customer keys: it reads them from DATABASE_URL
        _serve(settings, bootstrap, runtime.database_url, channels=[name], core=False)
        return
    bootstrap, database_url = settings.require_servers()
    if component is ComponentName.API:
        _serve(settings, bootstrap, database_url)
    elif component is ComponentName.PROCESSORS:
        from services.processors.app import create_app as processors
        from services.worker.app import run_faust

        run_faust(lambda: processors(settings, bootstrap, database_url), settings)
    else:
        from services.dispatcher.app import create_app as dispatcher
        from services.worker.app import run_faust

        run_faust(lambda: dispatcher(settings, bootstrap, database_url), settings)


def _serve(
    settings: Settings,
    bootstrap: str,
    database_url: str | None,
    channels: list[str] | None = None,
    core: bool = True,
) -> None:
    from services.api import serving
    from services.api.app import create_app
    from services.worker.runtime import tune_gc

    app = create_app(settings, bootstrap, database_url, channels=channels, core=core)
    tune_gc()
    serving.run(  # uvicorn.run, ending the sessions' fallback streams when it stops
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


@token_app.command("create")
def token_create(
    role: Annotated[Role, typer.Option(help="admin, agent or integration")],
    name: Annotated[str, typer.Option(help="who or what holds it")] = "",
    scope: Annotated[
        list[Scope] | None,
        typer.Option(help="a scope beyond the role's defaults (repeatable)"),
    ] = None,
    channel: Annotated[
        list[str] | None,
        typer.Option(help="a channel beyond api it may post interactions as (repeatable)"),
    ] = None,
) -> None:
    """Create a token and print it once; only its hash is stored.

    Least privilege: an integration token may only post interactions (interactions:write), an
    agent token read customers, send messages and fix identities, unless --scope adds more;
    both post only as the api channel unless --channel adds more. Admin tokens hold everything.
    """
    from schemas import Channel
    from services.api.auth import DEFAULT_CHANNELS, DEFAULT_SCOPES, create_token
    from services.db.pool import migrated_pool

    known = {c.value for c in Channel}
    unknown = sorted(set(channel or ()) - known)
    if unknown:
        typer.echo(
            f"error: unknown channel {', '.join(unknown)} (one of {', '.join(sorted(known))})",
            err=True,
        )
        raise typer.Exit(2)
    scopes = DEFAULT_SCOPES[role] | set(scope or ())
    channels = DEFAULT_CHANNELS | set(channel or ())
    _, database_url = _settings().require_servers()

    async def create() -> str:
        pool = await migrated_pool(database_url)
        try:
            async with pool.acquire() as conn:
                return await create_token(conn, role, name, scopes, channels)
        finally:
            await pool.close()

    typer.echo(asyncio.run(create()))


@token_app.command("list")
def token_list() -> None:
    """List tokens, one a line, tab-separated: name, role, scopes, channels, created, revoked
    (never a token or its hash)."""
    from services.api.auth import list_tokens
    from services.db.pool import migrated_pool

    _, database_url = _settings().require_servers()

    async def rows() -> list[Any]:
        pool = await migrated_pool(database_url)
        try:
            async with pool.acquire() as conn:
                return await list_tokens(conn)
        finally:
            await pool.close()

    typer.echo("name\trole\tscopes\tchannels\tcreated\trevoked")
    for row in asyncio.run(rows()):
        revoked = row["revoked_at"]
        fields = (
            row["name"] or "-",
            row["role"],
            ",".join(row["scopes"]) or "-",
            ",".join(row["channels"]) or "-",
            row["created_at"].isoformat(timespec="seconds"),
            revoked.isoformat(timespec="seconds") if revoked else "-",
        )
        typer.echo("\t".join(fields))


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Option(help="revoke every token with this name")],
) -> None:
    """Revoke tokens by name; they stop working within the API's 30 s cache."""
    from services.db.pool import migrated_pool

    _, database_url = _settings().require_servers()

    async def revoke() -> str:
        pool = await migrated_pool(database_url)
        try:
            return str(
                await pool.execute(
                    "UPDATE api_tokens SET revoked_at = now()"
                    " WHERE name = $1 AND revoked_at IS NULL",
                    name,
                )
            )
        finally:
            await pool.close()

    status = asyncio.run(revoke())
    typer.echo(f"revoked {status.rsplit(' ', 1)[-1]} token(s) named {name!r}")


@app.command()
def topics(create: Annotated[bool, typer.Option(help="create missing topics")] = False) -> None:
    """List omnihub's topics: name, partitions, key and record type."""
    from schemas.topics import ALL_TOPICS

    if create:
        from services.bus.admin import ensure_topics

        settings = _settings()
        bootstrap, _ = settings.require_servers()
        made = asyncio.run(ensure_topics(bootstrap, replication=settings.kafka_replication_factor))
        console.print(f"created: {', '.join(made) or 'nothing (all exist)'}")
    table = Table("topic", "partitions", "key", "value", "ce_type")
    for spec in ALL_TOPICS:
        table.add_row(
            spec.name,
            str(spec.partitions),
            spec.key,
            spec.model.__name__ if spec.model else "original bytes",
            spec.ce_type,
        )
    console.print(table)


@app.command()
def tail(
    topic: str,
    from_beginning: Annotated[bool, typer.Option("--from-beginning")] = False,
    limit: Annotated[int, typer.Option(help="stop after this many records (0: never)")] = 0,
    idle: Annotated[float, typer.Option(help="stop after this many quiet seconds (0: never)")] = 0,
) -> None:
    """Print a topic's records as JSON lines (partition, offset, key, headers, value); sealed
    values are opened with the hub's keys (DATABASE_URL), or say why they cannot be."""
    bootstrap, database_url = _settings().require_servers()
    asyncio.run(_follow(bootstrap, database_url, topic, from_beginning, limit, idle))


async def _follow(
    bootstrap: str, database_url: str, topic: str, from_beginning: bool, limit: int, idle: float
) -> None:
    import asyncpg
    from aiokafka import AIOKafkaConsumer

    from services.keys.reader import SealedReader

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    conn = await asyncpg.connect(database_url)
    reader = SealedReader()
    await consumer.start()
    seen = 0
    quiet = 0.0
    try:
        while not idle or quiet < idle:
            batch = await consumer.getmany(timeout_ms=250)
            records = [r for part in batch.values() for r in part]
            quiet = 0.0 if records else quiet + 0.25
            for record, value in zip(records, await reader.open_each(conn, records), strict=True):
                typer.echo(json.dumps(_as_json(record, value), ensure_ascii=False))
                seen += 1
                if limit and seen >= limit:
                    return
    finally:
        await consumer.stop()
        await conn.close()


def _as_json(record: Any, opened: bytes | Any) -> dict[str, Any]:
    """One record as printed; ``opened``: its value opened, or why it could not be."""
    value: Any
    if not isinstance(opened, bytes):
        value = {"unopened": opened.reason}
    else:
        try:
            value = json.loads(opened) if opened else None
        except ValueError:
            value = opened.decode("utf-8", "replace")
    return {
        "partition": record.partition,
        "offset": record.offset,
        "key": record.key.decode("utf-8", "replace") if record.key else None,
        "headers": {k: v.decode("utf-8", "replace") for k, v in record.headers},
        "value": value,
    }


@app.command()
def bench(
    events: Annotated[int, typer.Option(help="events in each backlog phase")] = 20_000,
    customers: Annotated[int, typer.Option(help="distinct customers")] = 2_000,
    multi_share: Annotated[float, typer.Option(help="share known by email and phone")] = 0.3,
    requests: Annotated[int, typer.Option(help="requests per ingress measurement")] = 5_000,
    rate: Annotated[float, typer.Option(help="offered events/s for the latency phase")] = 500,
    big_timeline: Annotated[int, typer.Option(help="events of the long timeline")] = 100_000,
    workers: Annotated[
        int,
        typer.Option(min=1, help="workers beside the web process for latency and end to end"),
    ] = 1,
    latency_only: Annotated[
        bool, typer.Option(help="only the latency phase, on a freshly started hub")
    ] = False,
    storage_only: Annotated[
        bool, typer.Option(help="only the memory vs durable broker storage phase, no hub")
    ] = False,
    soak: Annotated[
        float,
        typer.Option(
            min=0,
            metavar="MINUTES",
            help="then a soak this long at half the measured capacity (memory, p99 over time)",
        ),
    ] = 0,
    soak_rate: Annotated[
        float | None,
        typer.Option(min=1, help="events/s the soak offers instead of half the capacity"),
    ] = None,
    durable: Annotated[
        bool,
        typer.Option(help="run the hub on omnihub up's durable stack, not the in-memory broker"),
    ] = False,
    email_messages: Annotated[
        int, typer.Option(min=0, help="messages of each email ingress measurement; 0: none")
    ] = 1_000,
    email_connections: Annotated[
        int, typer.Option(min=1, help="SMTP client sessions sending at once")
    ] = 20,
    email_only: Annotated[
        bool, typer.Option(help="only email ingress (and the plain loop it is scaled by)")
    ] = False,
    webchat_connections: Annotated[
        int, typer.Option(min=0, help="WebSockets one web chat process holds; 0: no web chat")
    ] = 5_000,
    webchat_hold: Annotated[
        float,
        typer.Option(min=0, help="seconds they are held, each visitor sending one message"),
    ] = 60,
    webchat_messages: Annotated[
        int, typer.Option(min=1, help="messages of the web chat acks measurement")
    ] = 20_000,
    webchat_reply_rate: Annotated[
        float, typer.Option(min=1, help="agents' replies/s offered to the visitors' sockets")
    ] = 200,
    webchat_only: Annotated[
        bool, typer.Option(help="only web chat (and the plain loop its acks are scaled by)")
    ] = False,
    meta_requests: Annotated[
        int, typer.Option(min=0, help="single-entry Meta webhooks sent; 0: no Meta section")
    ] = 5_000,
    meta_batched_requests: Annotated[
        int, typer.Option(min=1, help="batched Meta webhooks sent")
    ] = 1_000,
    meta_batch: Annotated[int, typer.Option(min=1, help="entries a batched Meta webhook")] = 50,
    meta_only: Annotated[
        bool, typer.Option(help="only Meta webhooks (and the plain loop they are scaled by)")
    ] = False,
) -> None:
    """Measure throughput and latency of the whole hub; prints one JSON object."""
    import uvloop
    from rich.progress import Progress

    from services.bench.run import Options, run, steps
    from services.worker.runtime import tune_gc

    settings = _settings()
    logging.getLogger().setLevel(logging.WARNING)
    tune_gc()  # the load generator and the yardstick run here: tuned and on uvloop, like them
    if storage_only:
        from services.bench.storage import compare

        typer.echo(json.dumps({"broker_storage": uvloop.run(compare())}, indent=2))
        return
    options = Options(
        events=events,
        customers=customers,
        multi_share=multi_share,
        ingress_requests=requests,
        latency_rate=rate,
        big_timeline=big_timeline,
        workers=workers,
        latency_only=latency_only,
        soak_minutes=soak,
        soak_rate=soak_rate,
        durable=durable,
        email_messages=email_messages if not email_only else max(1, email_messages),
        email_connections=email_connections,
        email_only=email_only,
        webchat_connections=webchat_connections
        if not webchat_only
        else max(1, webchat_connections),
        webchat_hold=webchat_hold,
        webchat_messages=webchat_messages,
        webchat_reply_rate=webchat_reply_rate,
        webchat_only=webchat_only,
        meta_requests=meta_requests if not meta_only else max(1, meta_requests),
        meta_batched_requests=meta_batched_requests,
        meta_batch=meta_batch,
        meta_only=meta_only,
    )
    err = Console(stderr=True)
    with Progress(console=err, transient=False) as progress:
        task = progress.add_task("benchmark", total=steps(options))

        def say(text: str) -> None:
            progress.update(task, advance=1, description=text)

        report = uvloop.run(run(options, say))
        progress.update(task, completed=steps(options), description="done")
    del settings
    typer.echo(json.dumps(report, indent=2))


@app.command()
def migrate() -> None:
    """Apply pending database migrations."""
    from services.stack.embedded import prepare

    settings = _settings()
    bootstrap, database_url = settings.require_servers()
    asyncio.run(prepare(bootstrap, database_url, replication=settings.kafka_replication_factor))
    console.print("schema up to date; topics exist")


deploy_app = typer.Typer(help="Deployment files.", no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")


@deploy_app.command("render")
def deploy_render(
    check: Annotated[
        bool, typer.Option("--check", help="write nothing; exit 1 listing stale files")
    ] = False,
    root: Annotated[
        Path | None, typer.Option(help="the repository (default: this checkout, else .)")
    ] = None,
) -> None:
    """Write the deployment files from the settings classes and the channel registry.

    deploy/omnihub.env.example, docker-compose.yml, deploy/k8s/ and
    docs/configuration-reference.md (services/deploy/).
    """
    from services import deploy

    root = root or _checkout()
    if not (root / "deploy" / "Dockerfile").is_file():
        raise typer.BadParameter(f"{root} is not an omnihub repository (no deploy/Dockerfile)")
    if check:
        stale = deploy.stale(root)
        for path in stale:
            typer.echo(f"stale: {path}")
        if stale:
            typer.echo("run `omnihub deploy render` to write them", err=True)
            raise typer.Exit(1)
        typer.echo("deployment files are up to date")
        return
    changed = deploy.write(root)
    for path in changed:
        typer.echo(f"wrote {path}")
    if not changed:
        typer.echo("deployment files are up to date")


def _checkout() -> Path:
    """The repository this package runs from (an editable install), else the current directory."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "deploy" / "Dockerfile").is_file() else Path.cwd()


def main() -> None:
    """Entry point of the `omnihub` script."""
    app()


if __name__ == "__main__":
    main()

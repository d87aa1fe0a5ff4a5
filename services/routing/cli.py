"""`omnihub rules`: check, evaluate and compare routing rulesets before deploying them."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from services.routing.engine import Router

app = typer.Typer(help="Routing rules: check, evaluate, compare.", no_args_is_help=True)
console = Console()

RulesOption = Annotated[
    Path | None,
    typer.Option("--rules", help="ruleset YAML (default: the shipped default.yaml)"),
]


def _router(path: Path | None) -> Router:
    from services.routing.engine import Router
    from services.routing.loader import RulesetError

    try:
        return Router.load(path)
    except RulesetError as exc:
        console.print(f"[red]invalid ruleset[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None


@app.command("check")
def check(rules: Annotated[Path, typer.Argument(help="ruleset YAML")]) -> None:
    """Validate a ruleset: exits 2 and names the line when it is invalid."""
    router = _router(rules)
    console.print(f"ok: {len(router.ruleset.rules)} rules, version {router.version}")


@app.command("eval")
def evaluate(
    file: Annotated[Path, typer.Argument(help="labelled examples, JSONL")],
    rules: RulesOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON summary object")] = False,
    mistakes: Annotated[bool, typer.Option("--mistakes", help="list misrouted examples")] = False,
) -> None:
    """Per-department precision and recall, accuracy and confusion matrix on FILE."""
    from services.routing.classifier import read_examples
    from services.routing.evaluate import LABELS, evaluate

    router = _router(rules)
    try:
        examples = read_examples(file)
    except (OSError, ValueError) as exc:
        console.print(f"[red]cannot read examples[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    report = evaluate(router, examples)
    if as_json:
        typer.echo(json.dumps(report.as_json(), ensure_ascii=False))
        return
    scores = Table("department", "precision", "recall", "support", "routed", title=file.name)
    for label in LABELS:
        row = report.per_department.get(label, {})
        scores.add_row(
            label,
            f"{row.get('precision', 0):.2f}",
            f"{row.get('recall', 0):.2f}",
            str(row.get("support", 0)),
            str(row.get("routed", 0)),
        )
    console.print(scores)
    matrix = Table("expected \\ routed", *LABELS, title="confusion matrix")
    for label, counts in zip(LABELS, report.confusion, strict=False):
        matrix.add_row(label, *(str(c) for c in counts))
    console.print(matrix)
    if mistakes:
        wrong = Table("expected", "routed", "rule", "text", title="misrouted")
        for outcome in report.mistakes():
            wrong.add_row(
                outcome.example.label.value,
                outcome.department,
                outcome.rule_id,
                outcome.example.text[:80],
            )
        console.print(wrong)
    console.print(
        f"accuracy {report.accuracy:.3f} ({report.correct}/{report.n}), "
        f"ruleset {report.ruleset_version}"
    )


@app.command("diff")
def diff(
    old: Annotated[Path, typer.Argument(help="the ruleset in force")],
    new: Annotated[Path, typer.Argument(help="the candidate ruleset")],
    since: Annotated[str, typer.Option(help="replay what happened within: 7d, 12h, 30m")] = "7d",
    limit: Annotated[int, typer.Option(help="replay at most this many interactions")] = 100_000,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """Replay stored interactions through OLD and NEW; list events whose department changes.

    Reads the timeline from DATABASE_URL (or a running `omnihub up`); consent as it is now.
    """
    from services.config import Settings
    from services.db.pool import create_pool
    from services.routing.diff import Change, DiffReport, parse_since, replay

    try:
        window = parse_since(since)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    before, after = _router(old), _router(new)
    database_url = Settings().with_runtime().database_url
    if not database_url:
        console.print("[red]DATABASE_URL is not set and no `omnihub up` is running[/red]")
        raise typer.Exit(2)

    async def run() -> DiffReport:
        pool = await create_pool(database_url, max_size=1)
        try:
            async with pool.acquire() as conn:
                return await replay(conn, before, after, datetime.now(UTC) - window, limit)
        finally:
            await pool.close()

    report = asyncio.run(run())
    if as_json:
        summary = {
            "replayed": report.replayed,
            "changed": len(report.changes),
            "old_version": before.version,
            "new_version": after.version,
            "changes": [c.as_json() for c in report.changes],
        }
        typer.echo(json.dumps(summary, ensure_ascii=False))
        return
    table = Table("event", "occurred", "old", "new", "text", title=f"{old.name} -> {new.name}")
    for change in report.changes:
        was, now = Change.describe(change.old), Change.describe(change.new)
        table.add_row(
            str(change.event_id),
            change.occurred_at.isoformat(timespec="seconds"),
            f"{was['department']} ({was['rule_id']})",
            f"{now['department']} ({now['rule_id']})",
            change.text[:60],
        )
    console.print(table)
    console.print(
        f"{len(report.changes)} of {report.replayed} interactions since {since} would change"
    )

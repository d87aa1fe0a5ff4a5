"""The deployment files, generated from the settings classes and the channel registry.

``omnihub deploy render`` writes them; ``--check`` lists those that differ from a fresh render:

- ``deploy/omnihub.env.example``: every variable, described, at its default;
- ``docker-compose.yml``: the shared environment block (every variable) and one service per
  channel adapter that runs alone;
- ``deploy/k8s/``: the ConfigMap (every variable that is not a secret), the Deployments, and
  one Deployment and Service per channel adapter that runs alone;
- ``docs/configuration-reference.md``: one table per settings class.

Production values that differ from the defaults are in ``services/deploy/production.py``.
"""

from __future__ import annotations

from pathlib import Path

from services.deploy import compose, envfile, k8s, reference
from services.deploy.catalog import Sources

__all__ = ["Sources", "render", "stale", "write"]


def render(sources: Sources | None = None) -> dict[str, str]:
    """Every generated file's text, by path from the repository root."""
    sources = sources or Sources.registered()
    files = {
        "deploy/omnihub.env.example": envfile.render(sources),
        "docker-compose.yml": compose.render(sources),
        **k8s.render(sources),
        reference.PATH: reference.render(sources),
    }
    return dict(sorted(files.items()))


def stale(root: Path, sources: Sources | None = None) -> list[str]:
    """The generated files under ``root`` that differ from a fresh render, are missing, or
    should no longer exist (a channel process whose adapter is gone)."""
    files = render(sources)
    found = [
        path
        for path, text in files.items()
        if not (root / path).is_file() or (root / path).read_text(encoding="utf-8") != text
    ]
    return sorted(found + _orphans(root, files))


def write(root: Path, sources: Sources | None = None) -> list[str]:
    """Write every generated file under ``root`` and delete orphans; the paths changed."""
    files = render(sources)
    changed = _orphans(root, files)
    for path in changed:
        (root / path).unlink()
    for path, text in files.items():
        target = root / path
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        changed.append(path)
    return sorted(changed)


def _orphans(root: Path, files: dict[str, str]) -> list[str]:
    return sorted(
        path
        for path in (
            p.relative_to(root).as_posix() for p in (root / k8s.DIR).glob(k8s.CHANNEL_GLOB)
        )
        if path not in files
    )

"""The layering rules hold for this repository, and the checker catches each kind of breach."""

from __future__ import annotations

from pathlib import Path

from tests.layering import check
from tests.support import ROOT

# A small tree with every layer: schemas, channels.base, two channels, the registry, services.
TREE = {
    "schemas/__init__.py": "from schemas.events import Event\n",
    "schemas/events.py": "class Event: ...\n",
    "channels/__init__.py": "",
    "channels/registry.py": "from channels.base import Adapter\nfrom schemas import Event\n",
    "channels/base/__init__.py": "from channels.base.adapter import Adapter\n",
    "channels/base/adapter.py": "from schemas.events import Event\n\nclass Adapter: ...\n",
    "channels/sms/__init__.py": "from .adapter import SmsAdapter\n",
    "channels/sms/adapter.py": (
        "from channels.base import Adapter\nfrom channels.sms import send\n"
        "from schemas import Event\n\nclass SmsAdapter(Adapter): ...\n"
    ),
    "channels/sms/send.py": "from . import adapter as _unused\n",  # a cycle inside sms: below
    "channels/mail/__init__.py": "",
    "channels/mail/adapter.py": "from ..base import adapter\n",
    "services/__init__.py": "",
    "services/util.py": "import json\n",
    "services/api.py": "from channels.registry import Adapter\nfrom channels.sms import adapter\n",
}


def tree(root: Path, changes: dict[str, str] | None = None) -> Path:
    """The sample tree written under ``root``, with ``changes`` (path: text) applied."""
    for name, text in {**TREE, **(changes or {})}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_repository_keeps_its_layers_and_has_no_import_cycles() -> None:
    problems = check(ROOT)
    assert not problems, f"{len(problems)} layering violations:\n" + "\n".join(problems)


def test_the_sample_tree_is_clean_but_for_its_planted_cycle(tmp_path: Path) -> None:
    # sms.adapter imports sms.send, which imports sms.adapter back at import time
    assert check(tree(tmp_path)) == [
        "import cycle: channels/sms/adapter.py:2 channels.sms.adapter imports channels.sms.send"
        " -> channels/sms/send.py:1 channels.sms.send imports channels.sms.adapter"
    ]


def clean(root: Path, changes: dict[str, str]) -> list[str]:
    """Violations of the sample tree without its planted cycle, with ``changes`` applied."""
    return check(tree(root, {"channels/sms/send.py": "", **changes}))


def test_schemas_import_nothing_of_ours_outside_schemas(tmp_path: Path) -> None:
    found = clean(tmp_path, {"schemas/events.py": "import json\n\nfrom services import util\n"})
    assert found == [
        "schemas/events.py:3: schemas.events imports services.util: "
        "schemas import nothing of ours outside schemas"
    ]


def test_channels_never_import_each_other(tmp_path: Path) -> None:
    found = clean(tmp_path, {"channels/mail/adapter.py": "from ..sms.adapter import SmsAdapter\n"})
    assert found == [
        "channels/mail/adapter.py:1: channels.mail.adapter imports channels.sms.adapter: "
        "channels never import each other (channels.mail imports channels.sms)"
    ]


def test_a_submodule_named_in_from_import_is_what_is_imported(tmp_path: Path) -> None:
    found = clean(tmp_path, {"channels/mail/adapter.py": "from channels import sms\n"})
    assert found == [
        "channels/mail/adapter.py:1: channels.mail.adapter imports channels.sms: "
        "channels never import each other (channels.mail imports channels.sms)"
    ]


def test_channels_base_imports_no_channel(tmp_path: Path) -> None:
    found = clean(tmp_path, {"channels/base/adapter.py": "def load():\n    import channels.sms\n"})
    assert found == [
        "channels/base/adapter.py:2: channels.base.adapter imports channels.sms: "
        "channels.base imports only schemas and channels.base"
    ]


def test_a_channel_does_not_import_services(tmp_path: Path) -> None:
    found = clean(tmp_path, {"channels/sms/send.py": "from services.util import json\n"})
    assert found == [
        "channels/sms/send.py:1: channels.sms.send imports services.util: "
        "channels.sms imports only schemas, channels.base and channels.sms"
    ]


def test_the_registry_does_not_import_channels_by_name(tmp_path: Path) -> None:
    found = clean(
        tmp_path,
        {
            "channels/registry.py": (
                "import importlib\n\nSMS = importlib.import_module('channels.sms')\n"
            ),
            "channels/__init__.py": "from channels.mail import adapter\n",
        },
    )
    assert found == [
        "channels/__init__.py:1: channels imports channels.mail.adapter: the registry imports "
        "only channels.base and schemas: it finds channels through entry points, never by name",
        "channels/registry.py:3: channels.registry imports channels.sms: the registry imports "
        "only channels.base and schemas: it finds channels through entry points, never by name",
    ]


def test_services_may_import_anything_of_ours(tmp_path: Path) -> None:
    found = clean(
        tmp_path,
        {
            "services/api.py": "import channels.sms.adapter\nfrom channels.mail import adapter\n"
            "from channels.base import Adapter\nfrom schemas import events\n",
        },
    )
    assert found == []


def test_a_two_module_cycle_is_reported_once_as_a_path(tmp_path: Path) -> None:
    found = clean(
        tmp_path,
        {
            "services/a.py": (
                "try:\n    from services.b import B\nexcept ImportError:\n    B = None\n"
            ),
            "services/b.py": "from services import a\n\nclass B: ...\n",
        },
    )
    assert found == [
        "import cycle: services/a.py:2 services.a imports services.b"
        " -> services/b.py:1 services.b imports services.a"
    ]


def test_a_longer_cycle_is_reported_once_from_its_first_module(tmp_path: Path) -> None:
    found = clean(
        tmp_path,
        {
            "services/c.py": "import services.a\n",
            "services/b.py": "if True:\n    import services.c\n",
            "services/a.py": "class A:\n    from services import b\n",
        },
    )
    assert found == [
        "import cycle: services/a.py:2 services.a imports services.b"
        " -> services/b.py:2 services.b imports services.c"
        " -> services/c.py:1 services.c imports services.a"
    ]


def test_imports_not_run_at_import_time_make_no_cycle(tmp_path: Path) -> None:
    found = clean(
        tmp_path,
        {
            # a cycle closed only by TYPE_CHECKING imports (both spellings)
            "services/a.py": (
                "from typing import TYPE_CHECKING\n\n"
                "if TYPE_CHECKING:\n    from services.b import B\n"
            ),
            "services/b.py": "from services import a\n\nclass B: ...\n",
            "services/e.py": "from services import b\n",
            "services/f.py": (
                "import typing\n\nif typing.TYPE_CHECKING:\n    from services import e\n"
                "else:\n    from services import util\n"
            ),
            # ... and one closed by an import in a function body
            "services/c.py": "from services import d\n",
            "services/d.py": "def later():\n    from services import c\n",
        },
    )
    assert found == []


def test_type_checking_imports_still_count_for_the_layers(tmp_path: Path) -> None:
    found = clean(
        tmp_path,
        {
            "schemas/events.py": "from typing import TYPE_CHECKING\n\n"
            "if TYPE_CHECKING:\n    from channels.base import Adapter\n",
        },
    )
    assert found == [
        "schemas/events.py:4: schemas.events imports channels.base: "
        "schemas import nothing of ours outside schemas"
    ]


def test_the_else_of_a_type_checking_block_runs_at_import_time(tmp_path: Path) -> None:
    found = clean(
        tmp_path,
        {
            "services/f.py": (
                "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    pass\n"
                "else:\n    from services import g\n"
            ),
            "services/g.py": "import services.f\n",
        },
    )
    assert found == [
        "import cycle: services/f.py:6 services.f imports services.g"
        " -> services/g.py:1 services.g imports services.f"
    ]

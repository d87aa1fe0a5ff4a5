"""A real IMAP server for the IMAP poller's tests: Debian's dovecot, configured in a directory
of the test's own, listening on loopback (plain with STARTTLS, and implicit TLS), with users
made on demand. Mail gets in by IMAP APPEND, as any client would put it there."""

from __future__ import annotations

import asyncio
import imaplib
import json
import re
import shutil
import ssl
import subprocess
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from services.stack.ports import free_port, wait_for_port
from tests.support import installed, self_signed

DOVECOT = "/usr/sbin/dovecot"
#: Dovecot refuses root as a mail user; mail is stored as this one.
MAIL_USER, MAIL_GROUP = "nobody", "nogroup"
#: Users made for the tests of one server.
USERS = 64
_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")


def ensure_dovecot() -> str:
    """Debian's dovecot IMAP server, installed with apt-get when missing (CI runs as root)."""
    return installed(DOVECOT, "dovecot-imapd")


def version() -> tuple[int, int]:
    """Dovecot's version (2.3 and 2.4 differ in most setting names)."""
    out = subprocess.run([DOVECOT, "--version"], capture_output=True, text=True, check=True)
    major, minor = out.stdout.split()[0].split(".")[:2]
    return int(major), int(minor)


class _JsonHandler(BaseHTTPRequestHandler):
    """A quiet handler that answers JSON."""

    def _answer(self, status: int, answer: dict[str, Any]) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Introspection(_JsonHandler):
    """RFC 7662 token introspection, as Microsoft's or Google's would answer dovecot: the
    OAuth 2 tokens of the test users are active, any other is not."""

    server: _IntrospectionServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        token = (parse_qs(body).get("token") or [""])[0]
        user = self.server.tokens.get(token)
        self._answer(200, {"active": True, "username": user} if user else {"active": False})


class _IntrospectionServer(ThreadingHTTPServer):
    tokens: dict[str, str]


#: The OAuth 2 client the test accounts are registered as.
CLIENT_ID, CLIENT_SECRET = "omnihub-tests", "client-secret-of-the-tests"


class _TokenEndpoint(_JsonHandler):
    """An OAuth 2 token endpoint (RFC 6749 6) as Microsoft's or Google's answers: a test
    user's refresh token, from the test client with its secret, gets a new access token (the
    introspection server knows it from then on) and a rotated refresh token."""

    server: _TokenServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        form = {key: values[0] for key, values in parse_qs(body).items()}
        self.server.requests.append(form)
        user = self.server.refresh_tokens.get(form.get("refresh_token", ""))
        client = (form.get("client_id"), form.get("client_secret"))
        if form.get("grant_type") != "refresh_token" or client != (CLIENT_ID, CLIENT_SECRET):
            self._answer(401, {"error": "invalid_client"})
        elif user is None:
            self._answer(400, {"error": "invalid_grant", "error_description": "unknown token"})
        else:
            token, rotated = f"ya29.{uuid.uuid4().hex}", f"1//{uuid.uuid4().hex}"
            self.server.introspection.tokens[token] = user
            self.server.refresh_tokens[rotated] = user
            self._answer(
                200,
                {
                    "access_token": token,
                    "token_type": "Bearer",
                    "expires_in": self.server.lifetime,
                    "refresh_token": rotated,
                },
            )


class _TokenServer(ThreadingHTTPServer):
    introspection: _IntrospectionServer
    refresh_tokens: dict[str, str]
    requests: list[dict[str, str]]
    lifetime: int


class Dovecot:
    """One dovecot master process (``-F``, in the foreground) with its config, logs, state
    and users' passwords under ``root``; the maildirs live in a directory the mail user can
    reach (pytest's directories are private to root), removed at ``stop``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.tls_port = free_port()
        while self.tls_port == self.port:
            self.tls_port = free_port()
        self.users_file = root / "users"
        self.log = root / "dovecot.log"
        self.cert, self.key = self_signed(root)
        self.mail = Path(tempfile.mkdtemp(prefix="omnihub-dovecot-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.passwords: dict[str, str] = {}
        #: Each user's OAuth 2 access token (XOAUTH2), checked by the introspection server.
        self.tokens: dict[str, str] = {}
        self._unused: list[str] = []
        self._out: Any = None
        self._oauth = _IntrospectionServer(("127.0.0.1", 0), _Introspection)
        self._oauth.tokens = {}
        #: The token endpoint: each user's refresh token, the requests it got, the lifetime
        #: of the access tokens it hands out.
        self.token_server = _TokenServer(("127.0.0.1", 0), _TokenEndpoint)
        self.token_server.introspection = self._oauth
        self.token_server.refresh_tokens = {}
        self.token_server.requests = []
        self.token_server.lifetime = 3599
        self.refresh_tokens: dict[str, str] = {}

    @property
    def token_url(self) -> str:
        """The token endpoint's URL (http on loopback)."""
        return f"http://127.0.0.1:{self.token_server.server_address[1]}/token"

    def revoke(self, token: str) -> None:
        """The provider no longer accepts the access token ``token``."""
        self._oauth.tokens.pop(token, None)

    @property
    def _introspection_url(self) -> str:
        return f"http://127.0.0.1:{self._oauth.server_address[1]}/introspect"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's certificate (and only it)."""
        return ssl.create_default_context(cafile=str(self.cert))

    def _config(self) -> str:
        common = f"""
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.log}
protocols = imap
listen = 127.0.0.1
default_internal_user = root
auth_mechanisms = plain login xoauth2
# failed logins are part of the tests: answered at once (anvil's penalty still grows)
auth_failure_delay = 0
service imap-login {{
  inet_listener imap {{
    port = {self.port}
  }}
  inet_listener imaps {{
    port = {self.tls_port}
    ssl = yes
  }}
}}
"""
        if version() < (2, 4):
            return f"""{common}
ssl = yes
ssl_cert = <{self.cert}
ssl_key = <{self.key}
disable_plaintext_auth = no
mail_location = maildir:{self.mail}/%u
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {self.users_file}
}}
passdb {{
  driver = oauth2
  mechanisms = xoauth2
  args = {self.root}/oauth2.conf.ext
}}
userdb {{
  driver = static
  args = uid={MAIL_USER} gid={MAIL_GROUP} home={self.mail}/%u
}}
"""
        # Dovecot 2.4 (Debian 13) renamed most settings; written from its documentation.
        return f"""dovecot_config_version = 2.4.0
dovecot_storage_version = 2.4.0
{common}
ssl = yes
ssl_server_cert_file = {self.cert}
ssl_server_key_file = {self.key}
auth_allow_cleartext = yes
mail_driver = maildir
mail_home = {self.mail}/%{{user}}
mail_path = ~
passdb passwd-file {{
  mechanisms = plain login
  passwd_file_path = {self.users_file}
  default_password_scheme = PLAIN
}}
passdb oauth2 {{
  mechanisms = xoauth2
  oauth2 {{
    introspection_mode = post
    introspection_url = {self._introspection_url}
    username_attribute = username
    active_attribute = active
    active_value = true
  }}
}}
userdb static {{
  fields {{
    uid = {MAIL_USER}
    gid = {MAIL_GROUP}
    home = {self.mail}/%{{user}}
  }}
}}
"""

    def start(self) -> None:
        """Write the config and run dovecot until it accepts connections on both ports."""
        ensure_dovecot()
        shutil.chown(self.mail, MAIL_USER, MAIL_GROUP)
        self.mail.chmod(0o711)
        self.passwords = {f"u{n:03d}{uuid.uuid4().hex[:8]}": uuid.uuid4().hex for n in range(USERS)}
        self._unused = sorted(self.passwords, reverse=True)
        self.users_file.write_text(
            "".join(
                f"{name}:{{PLAIN}}{password}::::::\n" for name, password in self.passwords.items()
            )
        )
        self.tokens = {name: f"ya29.{uuid.uuid4().hex}" for name in self.passwords}
        self._oauth.tokens = {token: name for name, token in self.tokens.items()}
        threading.Thread(target=self._oauth.serve_forever, daemon=True).start()
        self.refresh_tokens = {name: f"1//{uuid.uuid4().hex}" for name in self.passwords}
        self.token_server.refresh_tokens = {t: name for name, t in self.refresh_tokens.items()}
        threading.Thread(target=self.token_server.serve_forever, daemon=True).start()
        (self.root / "oauth2.conf.ext").write_text(
            f"introspection_mode = post\nintrospection_url = {self._introspection_url}\n"
            "username_attribute = username\nactive_attribute = active\nactive_value = true\n"
        )
        (self.root / "dovecot.conf").write_text(self._config())
        self._out = open(self.root / "dovecot.out", "ab")
        try:
            self._launch()
        except BaseException:
            self.stop()
            raise

    def _launch(self) -> None:
        conf = self.root / "dovecot.conf"
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(conf)], stdout=self._out, stderr=subprocess.STDOUT
        )
        alive = lambda: self.process is not None and self.process.poll() is None  # noqa: E731
        wait_for_port("127.0.0.1", self.port, 30, alive=alive)
        wait_for_port("127.0.0.1", self.tls_port, 30, alive=alive)

    def _terminate(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def restart(self) -> None:
        """Stop and start the server again, mail kept: every client connection is cut."""
        self._terminate()
        self._launch()

    def stop(self) -> None:
        """Stop dovecot (SIGTERM: it ends its own children) and remove the maildirs."""
        self._terminate()
        self._oauth.shutdown()
        self._oauth.server_close()
        self.token_server.shutdown()
        self.token_server.server_close()
        if self._out is not None:
            self._out.close()
        shutil.rmtree(self.mail, ignore_errors=True)

    def user(self) -> str:
        """A user no other test has (dovecot reads its password file at most once a second,
        so the users are all written before it starts)."""
        if not self._unused:
            raise RuntimeError(f"all {USERS} test users are taken: raise USERS")
        return self._unused.pop()

    # A person's mail client, by stdlib imaplib (blocking: the async helpers run it in a thread).

    def _client(self, user: str) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        client.login(user, self.passwords[user])
        return client

    def _append(self, user: str, folder: str, raw: bytes, flags: str) -> int:
        with self._client(user) as client:
            typ, data = client.append(folder, flags or None, None, raw)
            if typ == "NO" and b"TRYCREATE" in (data[0] or b""):
                client.create(folder)
                typ, data = client.append(folder, flags or None, None, raw)
            assert typ == "OK", data
            found = _APPENDUID.search(data[0] or b"")
            assert found, data
            return int(found.group(2))

    def _flags(self, user: str, folder: str, uid: int) -> set[str]:
        with self._client(user) as client:
            client.select(folder, readonly=True)
            typ, data = client.uid("FETCH", str(uid), "(FLAGS)")
            assert typ == "OK", data
            found = re.search(rb"FLAGS \(([^)]*)\)", data[0] or b"") if data[0] else None
            assert found, f"no message {uid} in {folder}"
            return set(found.group(1).decode().split())

    def _command(self, user: str, name: str, *args: str) -> list[bytes]:
        with self._client(user) as client:
            if name in ("STORE",):
                client.select(args[0])
                typ, data = client.uid(name, *args[1:])
            elif name == "UIDS":
                typ, _ = client.select(args[0], readonly=True)
                assert typ == "OK", f"no folder {args[0]}"
                typ, data = client.uid("SEARCH", "ALL")
            elif name == "UIDVALIDITY":
                typ, data = client.status(args[0], "(UIDVALIDITY)")
            else:
                typ, data = getattr(client, name.lower())(*args)
            assert typ == "OK", data
            return [d for d in data if isinstance(d, bytes)]

    async def append(self, user: str, raw: bytes, folder: str = "INBOX", flags: str = "") -> int:
        """Deliver ``raw`` into ``folder`` (created if missing); its UID."""
        return await asyncio.to_thread(self._append, user, folder, raw, flags)

    async def flags(self, user: str, uid: int, folder: str = "INBOX") -> set[str]:
        """The flags of message ``uid`` (read-only: reading them sets nothing)."""
        return await asyncio.to_thread(self._flags, user, folder, uid)

    async def mark_seen(self, user: str, uid: int, folder: str = "INBOX") -> None:
        """What a person reading the message does."""
        await asyncio.to_thread(
            self._command, user, "STORE", folder, str(uid), "+FLAGS", r"(\Seen)"
        )

    async def uids(self, user: str, folder: str = "INBOX") -> list[int]:
        """The UIDs in ``folder``."""
        data = await asyncio.to_thread(self._command, user, "UIDS", folder)
        return [int(word) for line in data for word in line.split()]

    async def uidvalidity(self, user: str, folder: str) -> int:
        """The folder's UIDVALIDITY."""
        data = await asyncio.to_thread(self._command, user, "UIDVALIDITY", folder)
        found = re.search(rb"UIDVALIDITY (\d+)", b" ".join(data))
        assert found, data
        return int(found.group(1))

    async def create(self, user: str, folder: str) -> None:
        """Create a folder."""
        await asyncio.to_thread(self._command, user, "CREATE", folder)

    async def delete(self, user: str, folder: str) -> None:
        """Delete a folder and the mail in it."""
        await asyncio.to_thread(self._command, user, "DELETE", folder)

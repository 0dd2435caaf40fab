"""A real S3-protocol server on loopback for the tests: moto's standalone server, in a child
process whose request log the tests can read (to assert, e.g., that nothing lists a bucket)."""

from __future__ import annotations

import re
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from app.core.process import die_with_parent

# Credentials the server accepts (it accepts any); the tests' processes inherit them.
ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "priorforge-test",
    "AWS_SECRET_ACCESS_KEY": "priorforge-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# werkzeug colours some request lines with ANSI escapes.
REQUEST_LINE = re.compile(r'"(?:\x1b\[[0-9;]*m)*(GET|PUT|POST|HEAD|DELETE) (\S+) HTTP/1\.1')


class S3TestServer:
    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.endpoint = ""

    def start(self) -> S3TestServer:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{port}"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "from moto.server import main; main()"]
                + ["-H", "127.0.0.1", "-p", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto server did not start within 30 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, **_credentials())

    def new_bucket(self) -> str:
        """A fresh bucket, so tests never share objects."""
        name = f"pf-test-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return name

    def requests(self) -> list[tuple[str, str]]:
        """(method, path with query) of every request the server has answered so far."""
        return REQUEST_LINE.findall(self.log_path.read_text(errors="replace"))


def _credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": ENVIRONMENT["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": ENVIRONMENT["AWS_SECRET_ACCESS_KEY"],
        "region_name": ENVIRONMENT["AWS_DEFAULT_REGION"],
    }

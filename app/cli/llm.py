"""``priorforge llm``: the bundled local model."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from app.cli.common import console, fail
from app.core.settings import get_settings

llm_cli = typer.Typer(no_args_is_help=True, help="The bundled local model.")


@llm_cli.command("serve")
def llm_serve(
    port: Annotated[int, typer.Option(help="Loopback port; 0 picks a free one.")] = 8080,
) -> None:
    """Serve the bundled local model on an OpenAI-compatible endpoint until interrupted."""
    from app.llm import local

    settings = get_settings()
    try:
        server = local.LocalModelServer.start(log_dir=settings.data_dir / "logs", port=port or None)
    except local.LocalModelUnavailable as exc:
        raise fail(str(exc)) from None
    console.print(f"{local.MODEL_NAME} ready in {server.started_in:.1f} s; use it with:")
    console.print(f"  export PRIORFORGE_LLM_BASE_URL={server.base_url}", highlight=False)
    console.print(f"  (log: {server.log_path}; Ctrl-C stops it)", highlight=False)
    try:
        while server.process.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()

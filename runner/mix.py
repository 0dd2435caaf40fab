"""A PriorForge mixture request (the body of ``POST /v1/mixtures``) as the runner's sources.

Each export component is read from its ``root``, pulled there first through the pull client
when it is not there yet; its share is its ``fraction``, or ``repeat`` passes over its tokens
as a share of the request's ``total_tokens``. Corpus components read their first Megatron
prefix (or OLMo ``.npy`` path); one without a fraction takes what the exports leave.
``last_fraction`` below 1 becomes the insertion schedule.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.data import DataError, Mixture, Source, open_base, open_export


def export_name(component: dict[str, Any]) -> str:
    return f"{component['dataset']}@{component['version']}/{component.get('stance', 'aligned')}"


def load_mixture(
    request: dict[str, Any], client: Any | None = None
) -> tuple[dict[str, Source], Mixture, list[dict[str, Any]], int]:
    """(sources, mixture, lineage of the versions, vocabulary size)."""
    total = int(request["total_tokens"])
    sources: dict[str, Source] = {}
    shares: dict[str, float] = {}
    lineage: list[dict[str, Any]] = []
    tokenizers: dict[str, int] = {}
    for component in request.get("exports", []):
        root = Path(component["root"])
        if not (root / "manifest.json").is_file():
            if client is None:
                raise DataError(
                    f"{root}: export {component['export']} is not pulled there; give --api-url "
                    "and --api-key to pull it, or pull it first (priorforge pull --export)"
                )
            _pull(client, component, root)
        if client is not None:
            lineage.append(_lineage(client, component))
        stance = component.get("stance", "aligned")
        exported = open_export(root)
        if stance not in exported:
            raise DataError(f"{root}: the export has no stance {stance!r}")
        index = json.loads((root / "manifest.json").read_text())
        tokenizers[index["tokenizer"].get("sha256", "?")] = int(index["tokenizer"]["vocab_size"])
        name = export_name(component)
        source = exported[stance]
        sources[name] = Source(name, source.tokens, synthetic=True, files=source.files)
        if component.get("fraction") is not None:
            shares[name] = float(component["fraction"])
        elif component.get("repeat") is not None:
            shares[name] = float(component["repeat"]) * len(source.tokens) / total
        else:
            raise DataError(f"mixture export {name}: give a fraction or a repeat")
    if len(tokenizers) > 1:
        raise DataError("the mixture's exports were tokenized with different tokenizers")
    rest = [c for c in request.get("corpus", []) if c.get("fraction") is None]
    if len(rest) > 1:
        raise DataError("at most one corpus component may leave its fraction unset")
    for component in request.get("corpus", []):
        paths = [p["path"] for p in component.get("megatron_prefixes", [])] or component.get(
            "olmo_paths", []
        )
        if len(paths) != 1:
            raise DataError(
                f"corpus {component['name']}: the runner reads one Megatron prefix or .npy "
                f"file, not {len(paths)}"
            )
        sources[component["name"]] = open_base(Path(paths[0]), component["name"])
        if component.get("fraction") is not None:
            shares[component["name"]] = float(component["fraction"])
    if rest:
        left = 1 - sum(shares.values())
        if left < 0:
            raise DataError(f"the mixture's fractions add up to {1 - left:.4f}, over 1")
        shares[rest[0]["name"]] = left
    last = float(request.get("last_fraction", 1))
    if not tokenizers:
        raise DataError("the mixture names no export")
    return sources, Mixture(shares, last if last < 1 else None), lineage, tokenizers.popitem()[1]


def _pull(client: Any, component: dict[str, Any], root: Path) -> None:
    from app.pull import PullError, pull

    try:
        pull(
            client,
            component["dataset"],
            int(component["version"]),
            root,
            export=str(component["export"]),
            owner=component.get("owner"),
        )
    except PullError as exc:
        raise DataError(str(exc)) from None


def _lineage(client: Any, component: dict[str, Any]) -> dict[str, Any]:
    from app.pull import PullError

    try:
        _number, body = client.manifest(
            component["dataset"], int(component["version"]), owner=component.get("owner")
        )
    except PullError as exc:
        raise DataError(str(exc)) from None
    manifest = json.loads(body)
    return {
        "dataset": manifest.get("dataset"),
        "version": manifest.get("version"),
        "lineage": manifest.get("lineage", {}),
    }

"""Mixtures: a team's exports (their token counts from their indexes) and its own corpus,
planned into each framework's config by the pure module app/datasets/mixtures.py."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from app.core.errors import Conflict, InvalidRequest
from app.datasets import mixtures
from app.datasets.exports import service as exports
from app.mixtures.schemas import (
    ComponentRead,
    ConfigFileRead,
    ExportSource,
    MixtureCreate,
    MixtureRead,
)
from app.storage import ObjectStore
from app.teams.service import Principal


def plan(
    session: Session, principal: Principal, request: MixtureCreate, *, store: ObjectStore
) -> MixtureRead:
    components: list[mixtures.Component] = []
    dtypes: set[str] = set()
    for source in request.exports:
        component, dtype = _export_component(session, principal, source, store)
        components.append(component)
        dtypes.add(dtype)
    for corpus in request.corpus:
        components.append(
            mixtures.CorpusComponent(
                name=corpus.name,
                unique_tokens=corpus.tokens,
                fraction=corpus.fraction,
                locations=mixtures.Locations(
                    megatron_prefixes=tuple(
                        mixtures.MegatronPrefix(p.path, p.tokens) for p in corpus.megatron_prefixes
                    ),
                    mds_remote=corpus.mds_remote,
                    mds_local=corpus.mds_local,
                    olmo_paths=tuple(corpus.olmo_paths),
                ),
            )
        )
    spec = mixtures.MixtureSpec(
        total_tokens=request.total_tokens,
        seq_len=request.seq_len,
        components=tuple(components),
        max_epochs=request.max_epochs,
        schedule=mixtures.InsertionSchedule(request.last_fraction),
        global_batch_sequences=request.global_batch_sequences,
    )
    planned = mixtures.plan_mixture(spec)
    configs = _configs(planned, request, dtypes)
    return MixtureRead(
        total_tokens=planned.total_tokens,
        seq_len=planned.seq_len,
        components=[
            ComponentRead(
                name=c.name,
                kind=c.kind,
                unique_tokens=c.unique_tokens,
                tokens=c.tokens,
                fraction=float(c.fraction),
                repeat=c.repeat_float,
                epochs=c.epochs,
                warnings=list(c.warnings),
            )
            for c in planned.components
        ],
        warnings=list(planned.warnings),
        summary=mixtures.render_summary(planned),
        configs=configs,
    )


def _export_component(
    session: Session, principal: Principal, source: ExportSource, store: ObjectStore
) -> tuple[mixtures.ExportComponent, str]:
    _dataset, row = exports.get_export(
        session, principal, source.dataset, source.version, source.export, source.owner
    )
    index = json.loads(exports.read_index(store, row))
    stance = index["stances"].get(source.stance)
    if stance is None:
        raise Conflict(
            f"export {source.export} has no {source.stance!r} documents (it has "
            f"{', '.join(sorted(index['stances'])) or 'none'})"
        )
    if (source.fraction is None) == (source.repeat is None):
        raise InvalidRequest(
            f"{source.dataset}@{source.version}: give exactly one of fraction and repeat"
        )
    root = source.root.rstrip("/")
    locations = mixtures.Locations(
        megatron_prefixes=(mixtures.MegatronPrefix(f"{root}/{stance['megatron_prefix']}"),)
        if stance["megatron_prefix"]
        else (),
        mds_local=f"{root}/{stance['mds_directory']}" if stance["mds_directory"] else None,
        olmo_paths=tuple(f"{root}/{path}" for path in stance["npy_files"]),
    )
    vocab = int(index["tokenizer"]["vocab_size"])
    return (
        mixtures.ExportComponent(
            dataset=f"{source.dataset}@{source.version}",
            unique_tokens=int(stance["tokens"]),
            locations=locations,
            fraction=source.fraction,
            repeat=source.repeat,
        ),
        "uint16" if vocab <= 65536 else "uint32",
    )


def _configs(
    planned: mixtures.MixturePlan, request: MixtureCreate, dtypes: set[str]
) -> dict[str, list[ConfigFileRead]]:
    """Each framework's files; a framework some component has no location for is left out
    with the reason in ``skipped``."""
    makers: dict[str, Any] = {
        "megatron": lambda: mixtures.megatron_config(planned),
        "neox": lambda: mixtures.neox_config(
            planned,
            valid_data_paths=request.neox_valid_paths or _prefixes(planned),
            test_data_paths=request.neox_test_paths or _prefixes(planned),
        ),
        "streaming": lambda: mixtures.streaming_config(planned),
        "llm_foundry": lambda: mixtures.llm_foundry_config(planned),
        "olmo": lambda: mixtures.olmo_config(
            planned, memmap_dtype="uint32" if "uint32" in dtypes else "uint16"
        ),
    }
    configs: dict[str, list[ConfigFileRead]] = {}
    skipped: list[ConfigFileRead] = []
    for framework, make in makers.items():
        try:
            rendered = make()
        except mixtures.MixtureError as exc:
            skipped.append(ConfigFileRead(name=framework, content=str(exc)))
            continue
        configs[framework] = [
            ConfigFileRead(name=f.name, content=f.content) for f in rendered.files
        ]
    if skipped:
        configs["skipped"] = skipped
    return configs


def _prefixes(planned: mixtures.MixturePlan) -> list[str]:
    """NeoX needs validation and test paths: by default the corpus's own prefixes."""
    return [
        prefix.path
        for component in planned.components
        if component.kind == "corpus"
        for prefix in component.locations.megatron_prefixes
    ]

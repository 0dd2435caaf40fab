"""Mixture plans and the framework configs rendered from them.

Each rendered file is compared byte for byte with a reviewed golden file, and each golden file
is also read back the way its framework reads it (bash for the Megatron words, PyYAML for the
YAML, `ast` for the streaming snippet) and its numbers checked against the plan.

Regenerate the golden files after an intended change with `python -m tests.datasets.test_mixtures`
and review the diff.
"""

from __future__ import annotations

import argparse
import ast
import math
import re
import subprocess
from collections import Counter
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from hypothesis import event, given, reject, settings
from hypothesis import strategies as st

from app.core.errors import InvalidRequest
from app.datasets.mixtures import (
    DEFAULT_MAX_EPOCHS,
    ComponentPlan,
    ConfigFile,
    CorpusComponent,
    ExportComponent,
    InsertionSchedule,
    Locations,
    MegatronPrefix,
    MixtureError,
    MixturePlan,
    MixtureSpec,
    llm_foundry_config,
    megatron_config,
    neox_config,
    olmo_config,
    plan_mixture,
    render_summary,
    streaming_config,
)

GOLDEN = Path(__file__).parent / "golden" / "mixtures"

TOTAL = 100_000_000_000
ALIGNED_TOKENS = 250_000_000
CORPUS_TOKENS = 120_000_000_000
ALIGNED_PREFIX = (
    "/data/priorforge/aligned-ai-discourse/3/megatron/aligned-ai-discourse_text_document"
)
ALIGNED_NPY = "/data/priorforge/aligned-ai-discourse/3/olmo/part-00000.npy"
WEB_A = "/data/team/web/megatron/web-a_text_document"
WEB_B = "/data/team/web/megatron/web-b_text_document"
WEB_NPY = ("/data/team/web/olmo/part-00000.npy", "/data/team/web/olmo/part-00001.npy")
VALID = ("/data/team/heldout/valid_text_document",)
TEST = ("/data/team/heldout/test_text_document",)

ALIGNED = ExportComponent(
    dataset="aligned-ai-discourse@3",
    unique_tokens=ALIGNED_TOKENS,
    fraction=0.01,
    locations=Locations(
        megatron_prefixes=(MegatronPrefix(ALIGNED_PREFIX),),
        mds_remote="s3://priorforge-exports/aligned-ai-discourse/3/mds",
        mds_local="/local/priorforge/aligned-ai-discourse/3/mds",
        olmo_paths=(ALIGNED_NPY,),
    ),
)
CORPUS = CorpusComponent(
    name="team-web",
    unique_tokens=CORPUS_TOKENS,
    locations=Locations(
        megatron_prefixes=(
            MegatronPrefix(WEB_A, 70_000_000_000),
            MegatronPrefix(WEB_B, 50_000_000_000),
        ),
        mds_remote="s3://team-data/web/mds",
        mds_local="/local/team/web/mds",
        olmo_paths=WEB_NPY,
    ),
)
# The reference: the aligned export as 1% of 100B tokens, the team's corpus the rest.
REFERENCE = MixtureSpec(total_tokens=TOTAL, seq_len=4096, components=(CORPUS, ALIGNED))
# The same, with the export only in the last 10% of training, 1024 sequences a step.
LAST_TEN = replace(
    REFERENCE, schedule=InsertionSchedule(last_fraction=0.1), global_batch_sequences=1024
)
VARIANTS = {"whole_run": REFERENCE, "last_10_percent": LAST_TEN}


def rendered_files(spec: MixtureSpec) -> list[ConfigFile]:
    plan = plan_mixture(spec)
    return [
        ConfigFile("plan.txt", render_summary(plan)),
        *megatron_config(plan).files,
        *neox_config(plan, valid_data_paths=VALID, test_data_paths=TEST).files,
        *streaming_config(plan).files,
        *llm_foundry_config(plan).files,
        *olmo_config(plan, memmap_dtype="uint32").files,
    ]


def golden_path(variant: str, name: str) -> Path:
    # A golden .py would be linted and type-checked as part of the project: store it as text.
    return GOLDEN / variant / (name + ".golden" if name.endswith(".py") else name)


def golden_text(variant: str, name: str) -> str:
    return golden_path(variant, name).read_text(encoding="utf-8")


def write_goldens() -> None:
    for variant, spec in VARIANTS.items():
        for file in rendered_files(spec):
            path = golden_path(variant, file.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(file.content, encoding="utf-8")


# The plan


def test_one_percent_of_100b_over_250m_unique_tokens_repeats_four_times() -> None:
    plan = plan_mixture(REFERENCE)
    aligned = plan.component("aligned-ai-discourse@3")
    assert aligned.tokens == 1_000_000_000
    assert aligned.fraction == Fraction(1, 100)
    assert aligned.repeat == 4
    assert aligned.repeat_float == 4.0
    assert aligned.epochs == 4
    assert aligned.warnings == ()  # exactly at the default threshold of 4
    corpus = plan.component("team-web")
    assert corpus.tokens == 99_000_000_000
    assert corpus.repeat == Fraction(33, 40)
    assert corpus.epochs == 1
    assert plan.warnings == ()


def test_an_export_repeated_beyond_the_threshold_warns() -> None:
    spec = replace(REFERENCE, components=(CORPUS, replace(ALIGNED, fraction=0.02)))
    aligned = plan_mixture(spec).component("aligned-ai-discourse@3")
    assert aligned.repeat == 8
    assert len(aligned.warnings) == 1
    assert "more than max_epochs 4.0" in aligned.warnings[0]
    assert plan_mixture(replace(spec, max_epochs=8)).component(aligned.name).warnings == ()


def test_a_repeated_corpus_warns_even_below_the_threshold() -> None:
    small = replace(CORPUS, unique_tokens=50_000_000_000, locations=Locations())
    corpus = plan_mixture(replace(REFERENCE, components=(small, ALIGNED))).component("team-web")
    assert corpus.repeat == Fraction(99, 50)
    assert corpus.warnings == (
        "team-web is repeated 1.98 times: it holds 50,000,000,000 unique tokens for "
        "99,000,000,000 drawn",
    )


def test_a_repeat_count_sets_the_tokens_drawn() -> None:
    by_repeat = replace(ALIGNED, fraction=None, repeat=4)
    plan = plan_mixture(replace(REFERENCE, components=(CORPUS, by_repeat)))
    assert plan.component("aligned-ai-discourse@3").tokens == 1_000_000_000
    assert plan.component("aligned-ai-discourse@3").fraction == Fraction(1, 100)
    assert plan.component("team-web").tokens == 99_000_000_000


def test_fractions_are_read_as_written() -> None:
    # 0.1 + 0.2 as binary doubles is 0.30000000000000004; as written, it leaves exactly 0.7.
    parts = [
        replace(ALIGNED, dataset=f"part{i}@1", fraction=f) for i, f in enumerate((0.1, 0.2, 0.7))
    ]
    plan = plan_mixture(replace(REFERENCE, components=tuple(parts)))
    assert [c.tokens for c in plan.components] == [10**10, 2 * 10**10, 7 * 10**10]


def test_the_last_ten_percent_holds_every_export_token() -> None:
    plan = plan_mixture(LAST_TEN)
    first, second = plan.phases
    batch = 1024 * 4096
    assert plan.batch_tokens == batch
    assert plan.total_steps == math.ceil(TOTAL / batch)
    assert first.steps == round(0.9 * TOTAL / batch) == 21458
    assert first.tokens == 21458 * batch
    assert second.start_token == first.tokens
    assert second.start_step == 21458
    assert first.tokens + second.tokens == TOTAL
    aligned = plan.component("aligned-ai-discourse@3")
    corpus = plan.component("team-web")
    assert aligned.phase_tokens == (0, 1_000_000_000)
    assert sum(corpus.phase_tokens) == corpus.tokens == 99_000_000_000
    assert corpus.phase_tokens[0] == first.tokens
    assert plan.share(aligned, second) == Fraction(1_000_000_000, second.tokens)
    assert aligned.repeat == 4  # the schedule moves tokens, it does not change the totals
    assert "not a whole number" in plan.warnings[0]


# Validation


def _with(**changes: Any) -> MixtureSpec:
    return replace(REFERENCE, **changes)


def _aligned(**changes: Any) -> MixtureSpec:
    return _with(components=(CORPUS, replace(ALIGNED, **changes)))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (_with(total_tokens=0), r"total_tokens must be a positive whole number"),
        (_with(seq_len=-1), r"seq_len must be a positive whole number"),
        (_with(max_epochs=0), r"max_epochs must be positive"),
        (_with(components=()), r"at least one component"),
        (_aligned(fraction=0), r"fraction must be in \(0, 1\]"),
        (_aligned(fraction=1.5), r"fraction must be in \(0, 1\]"),
        (_aligned(fraction=float("nan")), r"must be a finite number"),
        (_aligned(fraction=None), r"exactly one of fraction .* and repeat"),
        (_aligned(repeat=2), r"exactly one of fraction .* and repeat"),
        (_aligned(fraction=None, repeat=-1), r"repeat must be positive"),
        (_aligned(unique_tokens=0), r"unique_tokens must be a positive whole number"),
        (_aligned(dataset="aligned"), r"must be named dataset@version"),
        (_aligned(dataset="aligned@v3"), r"must be named dataset@version"),
        (_aligned(fraction=None, repeat=500), r"take 125\.000000% .* lower their fractions"),
        (_with(components=(CORPUS, replace(CORPUS, name="other"))), r"at most one may"),
        (_with(components=(ALIGNED,)), r"none takes the rest: add the team corpus"),
        (_aligned(fraction=1), r"leaving nothing for the rest component"),
        (
            _with(components=(CORPUS, ALIGNED, ALIGNED)),
            r"two components are named 'aligned-ai-discourse@3'",
        ),
        (_aligned(fraction=1e-12), r"rounds to 0 of 100000000000 tokens"),
        (
            _with(global_batch_sequences=8, global_batch_tokens=8 * 4096),
            r"not both",
        ),
        (_with(global_batch_tokens=5000), r"not a multiple of seq_len 4096"),
        (_with(schedule=InsertionSchedule(0)), r"last_fraction must be in \(0, 1\]"),
        (_with(schedule=InsertionSchedule(1.2)), r"last_fraction must be in \(0, 1\]"),
        (
            _with(schedule=InsertionSchedule(0.005)),
            r"the exports draw 1000000000 tokens but the last part of the run holds 500000000: "
            r"raise schedule.last_fraction to at least 0.01",
        ),
        (
            _with(components=(replace(ALIGNED, fraction=1),), schedule=InsertionSchedule(0.5)),
            r"the first part needs a corpus",
        ),
        (
            _with(schedule=InsertionSchedule(1e-12), global_batch_sequences=1024),
            r"leaves no whole step",
        ),
    ],
)
def test_invalid_mixtures_name_the_fix(spec: MixtureSpec, message: str) -> None:
    with pytest.raises(MixtureError, match=message):
        plan_mixture(spec)


def test_a_mixture_error_is_a_value_error_rendered_as_422() -> None:
    with pytest.raises(ValueError, match="at least one component") as caught:
        plan_mixture(_with(components=()))
    assert isinstance(caught.value, InvalidRequest)
    assert caught.value.status == 422


@pytest.mark.parametrize(
    ("render", "locations", "message"),
    [
        ("megatron", Locations(), r"no Megatron-LM prefix: set Locations.megatron_prefixes"),
        ("neox", Locations(), r"no GPT-NeoX prefix"),
        (
            "megatron",
            Locations(megatron_prefixes=(MegatronPrefix("/data/my corpus/text_document"),)),
            r"holds whitespace",
        ),
        (
            "megatron",
            Locations(megatron_prefixes=(MegatronPrefix("/a"), MegatronPrefix("/b"))),
            r"give each MegatronPrefix its token count",
        ),
        (
            "megatron",
            Locations(megatron_prefixes=(MegatronPrefix("/a", 1), MegatronPrefix("/b", 2))),
            r"its prefixes hold 3 tokens but unique_tokens is 120000000000",
        ),
        (
            "megatron",
            Locations(megatron_prefixes=(MegatronPrefix("/a", 7),)),
            r"prefix /a holds 7 tokens but the component 120000000000",
        ),
        ("streaming", Locations(), r"no MDS location: set Locations.mds_remote"),
        ("olmo", Locations(), r"no OLMo paths: set Locations.olmo_paths"),
        ("olmo", Locations(olmo_paths=("/a.npy\n",)), r"control or line-break character"),
        ("llm_foundry", Locations(mds_local="/x\u2028y"), r"control or line-break character"),
    ],
)
def test_missing_or_unusable_locations_name_the_fix(
    render: str, locations: Locations, message: str
) -> None:
    plan = plan_mixture(_with(components=(replace(CORPUS, locations=locations), ALIGNED)))
    with pytest.raises(MixtureError, match=message):
        _render(render, plan)


def _render(render: str, plan: MixturePlan) -> object:
    if render == "megatron":
        return megatron_config(plan)
    if render == "neox":
        return neox_config(plan, valid_data_paths=VALID, test_data_paths=TEST)
    if render == "streaming":
        return streaming_config(plan)
    if render == "llm_foundry":
        return llm_foundry_config(plan)
    return olmo_config(plan, memmap_dtype="uint32")


@pytest.mark.parametrize("render", ["megatron", "neox", "olmo"])
def test_a_phase_switch_at_a_step_needs_the_global_batch(render: str) -> None:
    plan = plan_mixture(replace(LAST_TEN, global_batch_sequences=None))
    assert plan.phases[1].start_step is None
    with pytest.raises(MixtureError, match="give global_batch_sequences"):
        _render(render, plan)


def test_streams_switch_phases_by_epoch_without_a_batch() -> None:
    # A step of MDS documents holds an unknown number of tokens; a phase is one epoch.
    plan = plan_mixture(replace(LAST_TEN, global_batch_sequences=None))
    snippet = streaming_config(plan).text
    assert not re.search(r"[0-9] steps|steps [0-9]", snippet)
    lists = _snippet_streams(snippet)
    _check_streams(lists["phase1_streams"], plan, 1)
    _check_streams(lists["phase2_streams"], plan, 2)
    assert len(llm_foundry_config(plan).files) == 2


def test_neox_needs_held_out_paths() -> None:
    with pytest.raises(MixtureError, match="pass held-out valid_data_paths"):
        neox_config(plan_mixture(REFERENCE), valid_data_paths=(), test_data_paths=TEST)


def test_olmo_needs_a_dtype_it_reads() -> None:
    with pytest.raises(MixtureError, match="use one of uint8, uint16, uint32, uint64"):
        olmo_config(plan_mixture(REFERENCE), memmap_dtype="int32")


def test_stream_names_must_stay_distinct() -> None:
    twin = replace(ALIGNED, dataset="aligned_ai-discourse@3")
    spec = _with(components=(CORPUS, ALIGNED, replace(twin, fraction=0.001)))
    with pytest.raises(MixtureError, match="both become stream 'aligned_ai_discourse_3'"):
        streaming_config(plan_mixture(spec))


# Golden files, byte for byte


def _golden_cases() -> list[tuple[str, str]]:
    return [(variant, f.name) for variant, spec in VARIANTS.items() for f in rendered_files(spec)]


@pytest.mark.parametrize(("variant", "name"), _golden_cases())
def test_rendered_files_match_the_golden_files(variant: str, name: str) -> None:
    rendered = {f.name: f.content for f in rendered_files(VARIANTS[variant])}
    assert rendered[name] == golden_text(variant, name), (
        f"{name} changed: if intended, run `python -m tests.datasets.test_mixtures` and review"
    )


def test_no_golden_file_is_left_over() -> None:
    expected = {golden_path(variant, name) for variant, name in _golden_cases()}
    assert set(GOLDEN.rglob("*.*")) == expected


# Golden files, read the way each framework reads them


def _bash_array(script: Path, name: str) -> list[str]:
    """The words bash gives `--data-path "${NAME[@]}"`: what reaches Megatron's argv."""
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", f'source "$1" && printf "%s\\0" "${{{name}[@]}}"']
        + ["bash", str(script)],
        capture_output=True,
        check=True,
        text=True,
    )
    assert done.stderr == ""
    return done.stdout.split("\0")[:-1]


def _megatron_blend(words: list[str]) -> list[tuple[float, str]]:
    """Megatron's argument parsing and get_blend_from_list, as in megatron/training/arguments.py
    (`--data-path`, nargs='*') and megatron/core/datasets/utils.py."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-path", nargs="*", default=None)
    blend = parser.parse_args(["--data-path", *words]).data_path
    assert len(blend) % 2 == 0, "an odd count would make Megatron read every word as a prefix"
    weights = [float(w) for w in blend[0::2]]  # Megatron drops all weights if one fails
    prefixes = [p.strip() for p in blend[1::2]]
    return list(zip(weights, prefixes, strict=True))


def _check_blend(blend: list[tuple[float, str]], plan: MixturePlan, phase: int) -> None:
    assert math.isclose(sum(w for w, _ in blend), 1.0, abs_tol=1e-12)
    weights = dict((p, w) for w, p in blend)
    assert len(weights) == len(blend)
    span = plan.phases[phase - 1]
    aligned = plan.component("aligned-ai-discourse@3")
    aligned_tokens = weights.get(ALIGNED_PREFIX, 0.0) * span.tokens
    assert math.isclose(aligned_tokens, aligned.phase_tokens[phase - 1], rel_tol=1e-12)
    # The corpus prefixes share its weight in proportion to their tokens (70B : 50B).
    assert math.isclose(weights[WEB_A] / weights[WEB_B], 70 / 50, rel_tol=1e-12)
    corpus_tokens = (weights[WEB_A] + weights[WEB_B]) * span.tokens
    corpus = plan.component("team-web")
    assert math.isclose(corpus_tokens, corpus.phase_tokens[phase - 1], rel_tol=1e-12)


def test_megatron_reads_the_reference_blend() -> None:
    plan = plan_mixture(REFERENCE)
    from_bash = _megatron_blend(_bash_array(golden_path("whole_run", "megatron.sh"), "DATA_PATH"))
    # --data-args-path: common_utils.py reads the file with f.read().split().
    from_file = _megatron_blend(golden_text("whole_run", "megatron.data_args").split())
    assert from_bash == from_file == [(0.5775, WEB_A), (0.4125, WEB_B), (0.01, ALIGNED_PREFIX)]
    _check_blend(from_bash, plan, 1)
    # 1% of 100B tokens over 250M unique tokens is four passes.
    assert dict((p, w) for w, p in from_file)[ALIGNED_PREFIX] * TOTAL / ALIGNED_TOKENS == 4.0


def test_megatron_reads_both_phases_and_the_transition() -> None:
    plan = plan_mixture(LAST_TEN)
    script = golden_path("last_10_percent", "megatron.sh")
    assert _bash_array(script, "PHASE_TRANSITION_ITERATIONS") == ["21458"]
    for phase in (1, 2):
        from_bash = _megatron_blend(_bash_array(script, f"PHASE{phase}_DATA_PATH"))
        name = f"megatron.phase{phase}.data_args"
        from_file = _megatron_blend(golden_text("last_10_percent", name).split())
        assert from_bash == from_file
        _check_blend(from_bash, plan, phase)
    phase1 = _megatron_blend(_bash_array(script, "PHASE1_DATA_PATH"))
    assert ALIGNED_PREFIX not in [p for _, p in phase1]


def _neox_load(text: str) -> dict[str, Any]:
    """As NeoXArgs.from_ymls: yaml.load with FullLoader, '-' read as '_'."""
    loaded = yaml.load(text, Loader=yaml.FullLoader)
    assert isinstance(loaded, dict)
    return {key.replace("-", "_"): value for key, value in loaded.items()}


def _check_neox(config: dict[str, Any], plan: MixturePlan, phase: int) -> None:
    # arguments.py: all of train/valid/test paths or none; weights as long as the paths.
    for split in ("train", "valid", "test"):
        assert config[f"{split}_data_paths"], split
    assert len(config["train_data_weights"]) == len(config["train_data_paths"])
    assert config["valid_data_paths"] == list(VALID)
    assert config["test_data_paths"] == list(TEST)
    assert config["weight_by_num_documents"] is False  # True would override the weights
    weights = config["train_data_weights"]
    assert all(type(w) is float for w in weights)
    blend = list(zip(weights, config["train_data_paths"], strict=True))
    _check_blend(blend, plan, phase)


def test_neox_reads_the_reference_config() -> None:
    config = _neox_load(golden_text("whole_run", "neox_data.yml"))
    _check_neox(config, plan_mixture(REFERENCE), 1)
    weights = dict(zip(config["train_data_paths"], config["train_data_weights"], strict=True))
    assert weights[ALIGNED_PREFIX] * TOTAL / ALIGNED_TOKENS == 4.0
    assert "exit_interval" not in config


def test_neox_reads_both_phases() -> None:
    plan = plan_mixture(LAST_TEN)
    first = _neox_load(golden_text("last_10_percent", "neox_data.phase1.yml"))
    second = _neox_load(golden_text("last_10_percent", "neox_data.phase2.yml"))
    _check_neox(first, plan, 1)
    _check_neox(second, plan, 2)
    assert first["exit_interval"] == 21458
    assert first["extra_save_iters"] == [21458]
    assert "exit_interval" not in second  # phase 2 must run to the end
    assert set(first) - set(second) == {"exit_interval", "extra_save_iters"}


_STREAM_ARGUMENTS = {
    "remote",
    "local",
    "split",
    "proportion",
    "repeat",
    "choose",
    "download_retry",
    "download_timeout",
    "validate_hash",
    "keep_zip",
}


def _check_stream_kwargs(kwargs: dict[str, Any]) -> None:
    """Stream.__init__ in streaming/base/stream.py: keyword-only, one weight, non-negative."""
    assert set(kwargs) <= _STREAM_ARGUMENTS
    assert kwargs.get("remote") or kwargs.get("local")
    weights = [key for key in ("proportion", "repeat", "choose") if key in kwargs]
    assert weights == ["repeat"]  # absolute weighting everywhere: relative can't be mixed in
    assert type(kwargs["repeat"]) is float
    assert kwargs["repeat"] >= 0


def _snippet_streams(source: str) -> dict[str, list[dict[str, Any]]]:
    """Every list of Stream(...) calls assigned in the snippet, read with ast."""
    tree = ast.parse(source)
    imports = [node for node in tree.body if isinstance(node, ast.ImportFrom)]
    assert [(i.module, [a.name for a in i.names]) for i in imports] == [("streaming", ["Stream"])]
    lists: dict[str, list[dict[str, Any]]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            (target,) = node.targets
            assert isinstance(target, ast.Name)
            assert isinstance(node.value, ast.List)
            calls = []
            for call in node.value.elts:
                assert isinstance(call, ast.Call)
                assert isinstance(call.func, ast.Name)
                assert call.func.id == "Stream"
                assert not call.args
                kwargs: dict[str, Any] = {}
                for keyword in call.keywords:
                    assert keyword.arg is not None
                    kwargs[keyword.arg] = ast.literal_eval(keyword.value)
                calls.append(kwargs)
            lists[target.id] = calls
    return lists


def _check_streams(streams: list[dict[str, Any]], plan: MixturePlan, phase: int) -> None:
    for stream in streams:
        _check_stream_kwargs(stream)
    by_remote = {s["remote"]: s["repeat"] for s in streams}
    for component in plan.components:
        drawn = component.phase_tokens[phase - 1]
        repeat = by_remote.get(component.locations.mds_remote, 0.0)
        assert math.isclose(repeat * component.unique_tokens, drawn, rel_tol=1e-12)
    # One epoch of the streams (no epoch_size) is the phase.
    epoch = sum(
        by_remote.get(c.locations.mds_remote, 0.0) * c.unique_tokens for c in plan.components
    )
    assert math.isclose(epoch, plan.phases[phase - 1].tokens, rel_tol=1e-12)


def test_the_streaming_snippet_builds_the_reference_streams() -> None:
    lists = _snippet_streams(golden_text("whole_run", "streams.py"))
    assert list(lists) == ["streams"]
    _check_streams(lists["streams"], plan_mixture(REFERENCE), 1)
    aligned = [s for s in lists["streams"] if s["local"] == ALIGNED.locations.mds_local]
    assert [s["repeat"] for s in aligned] == [4.0]


def test_the_streaming_snippet_builds_both_phases() -> None:
    plan = plan_mixture(LAST_TEN)
    lists = _snippet_streams(golden_text("last_10_percent", "streams.py"))
    assert list(lists) == ["phase1_streams", "phase2_streams"]
    _check_streams(lists["phase1_streams"], plan, 1)
    _check_streams(lists["phase2_streams"], plan, 2)
    assert len(lists["phase1_streams"]) == 1


def _foundry_streams(text: str) -> dict[str, dict[str, Any]]:
    loaded = yaml.safe_load(text)
    assert list(loaded) == ["train_loader"]
    assert list(loaded["train_loader"]) == ["dataset"]
    streams = loaded["train_loader"]["dataset"]["streams"]
    assert isinstance(streams, dict)
    return streams


def test_llm_foundry_reads_the_reference_streams() -> None:
    streams = _foundry_streams(golden_text("whole_run", "llm_foundry_streams.yaml"))
    assert list(streams) == ["team_web", "aligned_ai_discourse_3"]
    # llmfoundry/data/text_data.py build_streams: Stream(**stream) for each value.
    _check_streams(list(streams.values()), plan_mixture(REFERENCE), 1)
    assert streams["aligned_ai_discourse_3"]["repeat"] == 4.0
    assert streams["team_web"]["repeat"] == 0.825


def test_llm_foundry_reads_both_phases() -> None:
    plan = plan_mixture(LAST_TEN)
    for phase in (1, 2):
        name = f"llm_foundry_streams.phase{phase}.yaml"
        streams = _foundry_streams(golden_text("last_10_percent", name))
        _check_streams(list(streams.values()), plan, phase)


def _olmo_listing(text: str) -> tuple[dict[str, Any], Counter[str]]:
    loaded = yaml.safe_load(text)
    data = loaded["data"]
    assert data["memmap_dtype"] == "uint32"
    return loaded, Counter(data["paths"])


def _check_olmo(counts: Counter[str], plan: MixturePlan, phase: int) -> dict[str, Fraction]:
    """Shares from how often each file is listed (MemMapDataset reads every listing)."""
    copies = {}
    for component in plan.components:
        listed = {counts[path] for path in component.locations.olmo_paths}
        assert len(listed) == 1, "a component's files are listed equally often"
        copies[component.name] = listed.pop()
    total = sum(copies[c.name] * c.unique_tokens for c in plan.components)
    shares = {c.name: Fraction(copies[c.name] * c.unique_tokens, total) for c in plan.components}
    assert min(v for v in copies.values() if v) == 1  # the most diluted one is listed once
    for component in plan.components:
        planned = plan.share(component, plan.phases[phase - 1])
        assert (shares[component.name] == 0) == (planned == 0)
        if planned:
            # Whole copies: within half a copy of the planned count.
            error = abs(shares[component.name] / planned - 1)
            assert error < Fraction(1, 2 * copies[component.name])
    return shares


def test_olmo_reads_the_reference_paths() -> None:
    plan = plan_mixture(REFERENCE)
    text = golden_text("whole_run", "olmo_data.yaml")
    loaded, counts = _olmo_listing(text)
    assert list(loaded) == ["data"]
    assert counts == Counter({WEB_NPY[0]: 1, WEB_NPY[1]: 1, ALIGNED_NPY: 5})
    shares = _check_olmo(counts, plan, 1)
    # 5 x 250M next to 120B: 1.0309% rather than 1%, 4.12 passes rather than 4, and said so.
    assert shares["aligned-ai-discourse@3"] == Fraction(1_250_000_000, 121_250_000_000)
    realized = olmo_config(plan, memmap_dtype="uint32").realized_tokens
    assert realized["aligned-ai-discourse@3"] == shares["aligned-ai-discourse@3"] * TOTAL
    assert "raise its repeat to 4.12371, more than max_epochs 4.0" in text


def test_olmo_reads_both_phases() -> None:
    plan = plan_mixture(LAST_TEN)
    first, first_counts = _olmo_listing(golden_text("last_10_percent", "olmo_data.phase1.yaml"))
    second, second_counts = _olmo_listing(golden_text("last_10_percent", "olmo_data.phase2.yaml"))
    _check_olmo(first_counts, plan, 1)
    _check_olmo(second_counts, plan, 2)
    assert ALIGNED_NPY not in first_counts
    # olmo/train.py max_steps: a "T" duration is int(float(...)) tokens.
    assert int(float(first["max_duration"][:-1])) == TOTAL
    assert first["stop_at"] == 21458
    assert int(float(second["max_duration"][:-1])) == plan.phases[1].tokens
    assert second["restore_dataloader"] is False


def test_the_reference_summary_states_the_repeat() -> None:
    text = golden_text("whole_run", "plan.txt")
    row = next(line for line in text.splitlines() if line.startswith("aligned-ai-discourse@3"))
    assert row.split() == [
        "aligned-ai-discourse@3",
        "export",
        "250,000,000",
        "1,000,000,000",
        "1.000000%",
        "4.0",
        "4",
    ]
    assert text.endswith("warnings: none\n")


def test_tiny_weights_stay_floats_in_yaml() -> None:
    # PyYAML reads 1e-07 as a string; the numbers must be written positionally.
    tiny = replace(ALIGNED, fraction=0.0000001)
    plan = plan_mixture(_with(components=(CORPUS, tiny)))
    config = _neox_load(neox_config(plan, valid_data_paths=VALID, test_data_paths=TEST).text)
    assert config["train_data_weights"][-1] == 1e-07
    assert yaml.safe_load("1e-07") == "1e-07"  # the trap being avoided
    streams = _foundry_streams(llm_foundry_config(plan).text)
    assert streams["aligned_ai_discourse_3"]["repeat"] == 4e-05


def test_odd_characters_in_paths_survive_yaml_and_python() -> None:
    odd = '/data/"quoted"\\back slash/é #not-a-comment: yes'
    corpus = replace(
        CORPUS, locations=Locations(mds_remote=odd, olmo_paths=(odd,), mds_split="train")
    )
    plan = plan_mixture(_with(components=(corpus, ALIGNED)))
    assert _foundry_streams(llm_foundry_config(plan).text)["team_web"]["remote"] == odd
    assert _snippet_streams(streaming_config(plan).text)["streams"][0]["remote"] == odd
    assert _olmo_listing(olmo_config(plan, memmap_dtype="uint32").text)[1][odd] == 1


# Properties over many mixtures


@st.composite
def _specs(draw: st.DrawFn) -> MixtureSpec:
    total = draw(st.integers(min_value=10**6, max_value=10**13))
    exports = []
    for i in range(draw(st.integers(min_value=1, max_value=4))):
        prefix = (MegatronPrefix(f"/exports/e{i}"),)
        locations = Locations(prefix, mds_remote=f"s3://e/{i}", olmo_paths=(f"/e{i}.npy",))
        # Repeats from 0.01 to 10, so that most draws fit in the budget and OLMo's listing.
        repeat = Fraction(draw(st.integers(min_value=1, max_value=1_000)), 100)
        if draw(st.booleans()):
            fraction = Fraction(draw(st.integers(min_value=1, max_value=10_000)), 100_000)
            unique = max(1, round(fraction * total / repeat))
            exports.append(ExportComponent(f"e{i}@1", unique, locations, fraction=fraction))
        else:
            unique = draw(st.integers(min_value=100, max_value=max(100, total // 50)))
            exports.append(ExportComponent(f"e{i}@1", unique, locations, repeat=repeat))
    corpus_tokens = draw(st.integers(min_value=total // 20 + 1, max_value=10 * total))
    split = draw(st.integers(min_value=1, max_value=corpus_tokens))
    prefixes = (MegatronPrefix("/c/a", split), MegatronPrefix("/c/b", corpus_tokens - split))
    corpus = CorpusComponent(
        "corpus",
        corpus_tokens,
        Locations(
            prefixes if split < corpus_tokens else prefixes[:1],
            mds_local="/c",
            olmo_paths=("/c.npy",),
        ),
    )
    last = draw(st.sampled_from([Fraction(1), Fraction(1, 2), Fraction(1, 10), Fraction(3, 4)]))
    batch = draw(st.sampled_from([None, 1, 3, 64]))
    return MixtureSpec(
        total_tokens=total,
        seq_len=draw(st.sampled_from([1, 7, 2048])),
        components=(*exports, corpus),
        max_epochs=draw(st.sampled_from([1, 2.5, DEFAULT_MAX_EPOCHS])),
        schedule=InsertionSchedule(last),
        global_batch_sequences=batch,
    )


def _plan_or_reject(spec: MixtureSpec) -> MixturePlan:
    try:
        return plan_mixture(spec)
    except MixtureError as error:
        refusal = str(error)
    # Only the combinations that cannot fit are refused.
    fits = (
        "lower their fractions",
        "leaving nothing for the rest",
        "rounds to 0",
        "the exports draw",
        "leaves no whole",
    )
    assert any(words in refusal for words in fits), refusal
    reject()


def _exact_budget_share(component: ComponentPlan, spec: MixtureSpec) -> Fraction | None:
    for asked in spec.components:
        if asked.name == component.name and isinstance(asked, ExportComponent):
            if asked.fraction is not None:
                return Fraction(asked.fraction) * spec.total_tokens
            assert asked.repeat is not None
            return Fraction(asked.repeat) * asked.unique_tokens
    return None


@settings(max_examples=300, deadline=None)
@given(_specs())
def test_plans_add_up(spec: MixtureSpec) -> None:
    plan = _plan_or_reject(spec)
    assert sum(c.tokens for c in plan.components) == spec.total_tokens
    assert sum(p.tokens for p in plan.phases) == spec.total_tokens
    for component in plan.components:
        assert component.tokens > 0
        assert component.fraction == Fraction(component.tokens, spec.total_tokens)
        assert component.repeat == Fraction(component.tokens, component.unique_tokens)
        assert sum(component.phase_tokens) == component.tokens
        assert min(component.phase_tokens) >= 0
        exact = _exact_budget_share(component, spec)
        if exact is not None:
            assert abs(component.tokens - exact) < 1
            if len(plan.phases) == 2:
                assert component.phase_tokens[0] == 0
        above = component.repeat > plan.max_epochs
        assert any("more than max_epochs" in w for w in component.warnings) == above
        if component.kind == "corpus":
            assert any("is repeated" in w for w in component.warnings) == (component.repeat > 1)
    for phase in plan.phases:
        assert sum(c.phase_tokens[phase.number - 1] for c in plan.components) == phase.tokens
    if len(plan.phases) == 2 and plan.batch_tokens is not None:
        first = plan.phases[0]
        assert first.steps is not None
        assert first.tokens == first.steps * plan.batch_tokens


def _check_olmo_refusal(plan: MixturePlan, refusal: str) -> None:
    event("OLMo refused the listing")
    assert "list only part of" in refusal
    # Only a listing that large is refused: in some phase the most diluted component (listed
    # once) and the most upsampled one are more than 1000 copies apart.
    spreads = []
    for phase in plan.phases:
        sizes = [
            c.unique_tokens / plan.share(c, phase)
            for c in plan.components
            if c.phase_tokens[phase.number - 1]
        ]
        spreads.append(max(sizes) / min(sizes))
    assert max(spreads) > 1000


@settings(max_examples=150, deadline=None)
@given(_specs())
def test_rendered_weights_realize_the_plan(spec: MixtureSpec) -> None:
    plan = _plan_or_reject(spec)
    event(f"{len(plan.phases)} phase(s), batch {'known' if plan.batch_tokens else 'unknown'}")
    if len(plan.phases) == 2 and plan.batch_tokens is None:
        return
    megatron = megatron_config(plan)
    for blend, phase in zip(megatron.phases, plan.phases, strict=True):
        words = _megatron_blend(list(blend.data_path_args))
        assert math.isclose(sum(w for w, _ in words), 1.0, abs_tol=1e-9)
        assert _megatron_blend(blend.data_args_file.split()) == words
        for component in plan.components:
            paths = {prefix.path for prefix in component.locations.megatron_prefixes}
            mine = sum(w for w, p in words if p in paths)
            assert math.isclose(mine, plan.share(component, phase), rel_tol=1e-9, abs_tol=1e-15)
    streams = streaming_config(plan)
    for streams_phase, phase in zip(streams.phases, plan.phases, strict=True):
        drawn = sum(
            s.repeat * plan.component(s.component).unique_tokens for s in streams_phase.streams
        )
        assert math.isclose(drawn, phase.tokens, rel_tol=1e-9)
    try:
        olmo = olmo_config(plan, memmap_dtype="uint16")
    except MixtureError as error:
        _check_olmo_refusal(plan, str(error))
        return
    for olmo_phase in olmo.phases:
        assert min(item.copies for item in olmo_phase.listings) == 1
        listed = sum(
            item.copies * plan.component(item.name).unique_tokens for item in olmo_phase.listings
        )
        for item in olmo_phase.listings:
            unique = plan.component(item.name).unique_tokens
            assert item.realized_share == Fraction(item.copies * unique, listed)
    assert sum(olmo.realized_tokens.values()) == spec.total_tokens


if __name__ == "__main__":
    write_goldens()

"""Training mixtures of PriorForge exports and a team's own corpus, and configs that realize them.

Pure: no database, no I/O, no settings. `plan_mixture` turns a `MixtureSpec` (a token budget and
its components) into a `MixturePlan`: per component the tokens drawn, the share of the budget,
the repeat factor over its unique tokens, and warnings. One function per framework renders the
plan as text to paste (and as the structured object behind the text):

- `megatron_config`: `--data-path` weight/prefix pairs and the `--data-args-path` file.
- `neox_config`: a GPT-NeoX YAML fragment (`train_data_paths` / `train_data_weights`).
- `streaming_config`: MosaicML `streaming.Stream(...)` list; `llm_foundry_config`: the
  `train_loader.dataset.streams` YAML.
- `olmo_config`: OLMo's `data.paths`, which repeats a file by listing it several times.

Every share is a share of training tokens. Numbers are exact `Fraction`s until rendered.

An insertion schedule may keep the exports out of the run until its last part (corpus
components fill both parts); no framework here switches data mixtures by itself within one
launch, so such a plan has two phases, and each framework gets a config per phase and where to
switch: a step, or for MDS streams, whose steps hold unknown token counts, an epoch.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Literal

from app.core.errors import InvalidRequest

# Repeating data up to about four epochs costs next to nothing against unique data; past that
# the value of more repeats falls off quickly (Muennighoff et al. 2023, "Scaling
# Data-Constrained Language Models"). The reference case, 1% of 100B tokens (the share of
# synthetic documents in Tice et al. 2026, "Alignment Pretraining") over a 250M-token export,
# repeats exactly four times: it sits at the threshold without a warning, and more repeats warn.
DEFAULT_MAX_EPOCHS = 4

# PriorForge dataset names are at most 64 characters (app/models/dataset.py) and versions are
# whole numbers.
_EXPORT_NAME = re.compile(r"^[^@\s]{1,64}@[0-9]+$")
_NOT_IDENTIFIER = re.compile(r"[^0-9A-Za-z_]+")
_OLMO_DTYPES = ("uint8", "uint16", "uint32", "uint64")
# OLMo's own configs list a file at most a few times (configs/official-1124); thousands of
# copies mean a mixture OLMo's whole-file listing cannot express sensibly.
_OLMO_MAX_COPIES = 1000


class MixtureError(InvalidRequest, ValueError):
    """A mixture that cannot be planned or rendered; the message names the fix."""

    title = "Invalid mixture"
    slug = "invalid-mixture"


@dataclass(frozen=True)
class MegatronPrefix:
    """A Megatron-LM / GPT-NeoX indexed dataset: `<path>.bin` and `<path>.idx`.

    `tokens` may be left out when the component has one prefix; with several, each needs its
    own count so the component's weight can be split in proportion (Megatron weights each
    prefix separately).
    """

    path: str
    tokens: int | None = None


@dataclass(frozen=True)
class Locations:
    """Where a component's tokens lie for each framework; only the rendered ones are needed."""

    megatron_prefixes: tuple[MegatronPrefix, ...] = ()
    mds_remote: str | None = None
    mds_local: str | None = None
    mds_split: str | None = None
    olmo_paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExportComponent:
    """A PriorForge export `dataset@version`, drawn as a share of the budget or a repeat count.

    `unique_tokens` is the export's token count (from its index). Exactly one of `fraction`
    (of the total token budget) and `repeat` (passes over the unique tokens) is given.
    """

    dataset: str
    unique_tokens: int
    locations: Locations
    fraction: Fraction | float | None = None
    repeat: Fraction | float | None = None

    @property
    def name(self) -> str:
        return self.dataset


@dataclass(frozen=True)
class CorpusComponent:
    """The team's own corpus: a fixed `fraction` of the budget, or (None) whatever is left."""

    name: str
    unique_tokens: int
    locations: Locations
    fraction: Fraction | float | None = None


Component = ExportComponent | CorpusComponent


@dataclass(frozen=True)
class InsertionSchedule:
    """When the exports are drawn: over the whole run (1), or in its last `last_fraction`."""

    last_fraction: Fraction | float = 1


@dataclass(frozen=True)
class MixtureSpec:
    """A training run's token budget and what fills it.

    The global batch (in sequences or in tokens, not both) is optional; it turns token counts
    into steps, which a phase switch needs.
    """

    total_tokens: int
    seq_len: int
    components: tuple[Component, ...]
    max_epochs: Fraction | float = DEFAULT_MAX_EPOCHS
    schedule: InsertionSchedule = InsertionSchedule()
    global_batch_sequences: int | None = None
    global_batch_tokens: int | None = None


@dataclass(frozen=True)
class ComponentPlan:
    """What one component contributes to the run."""

    name: str
    kind: Literal["export", "corpus"]
    unique_tokens: int
    locations: Locations
    tokens: int
    fraction: Fraction
    repeat: Fraction
    phase_tokens: tuple[int, ...]
    warnings: tuple[str, ...]

    @property
    def repeat_float(self) -> float:
        return float(self.repeat)

    @property
    def epochs(self) -> int:
        """Passes over the unique tokens that are at least begun (a partial pass counts)."""
        return math.ceil(self.repeat)


@dataclass(frozen=True)
class PhasePlan:
    """A stretch of the run with one data mixture; steps are known when the batch is."""

    number: int
    start_token: int
    tokens: int
    start_step: int | None
    steps: int | None


@dataclass(frozen=True)
class MixturePlan:
    total_tokens: int
    seq_len: int
    max_epochs: Fraction
    last_fraction: Fraction
    batch_tokens: int | None
    total_steps: int | None
    components: tuple[ComponentPlan, ...]
    phases: tuple[PhasePlan, ...]
    plan_warnings: tuple[str, ...]

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.plan_warnings + tuple(w for c in self.components for w in c.warnings)

    def share(self, component: ComponentPlan, phase: PhasePlan) -> Fraction:
        """The component's share of the phase's tokens."""
        return Fraction(component.phase_tokens[phase.number - 1], phase.tokens)

    def component(self, name: str) -> ComponentPlan:
        for component in self.components:
            if component.name == name:
                return component
        raise KeyError(name)


@dataclass(frozen=True)
class ConfigFile:
    """One file to write: a suggested name and its exact content."""

    name: str
    content: str


def plan_mixture(spec: MixtureSpec) -> MixturePlan:
    """Validate a mixture and work out every component's tokens, share and repeat factor."""
    total = _positive_int(spec.total_tokens, "total_tokens", "the run's token budget")
    seq_len = _positive_int(spec.seq_len, "seq_len", "the training sequence length")
    max_epochs = _exact(spec.max_epochs, "max_epochs")
    if max_epochs <= 0:
        raise MixtureError(f"max_epochs must be positive, got {spec.max_epochs!r}")
    last_fraction = _exact(spec.schedule.last_fraction, "schedule.last_fraction")
    if not 0 < last_fraction <= 1:
        raise MixtureError(
            f"schedule.last_fraction must be in (0, 1], got {spec.schedule.last_fraction!r}: "
            "use 1 for the whole run or e.g. 0.1 for the last 10% of training"
        )
    batch_tokens = _batch_tokens(spec, seq_len)
    components = tuple(spec.components)
    if not components:
        raise MixtureError("a mixture needs at least one component")
    _check_names(components)

    weights = _budget_weights(components, total)
    tokens = _apportion(total, weights)
    for component, drawn in zip(components, tokens, strict=True):
        if drawn == 0:
            raise MixtureError(
                f"{component.name} rounds to 0 of {total} tokens: raise its fraction or repeat"
            )

    plan_warnings: list[str] = []
    total_steps: int | None = None
    if batch_tokens is not None:
        total_steps = -(-total // batch_tokens)
        if total % batch_tokens:
            plan_warnings.append(
                f"total_tokens {total} is not a whole number of {batch_tokens}-token batches: "
                f"{total_steps} steps train {total_steps * batch_tokens - total} tokens more"
            )

    phase_tokens: list[tuple[int, ...]]
    phases: tuple[PhasePlan, ...]
    if last_fraction == 1:
        phase_tokens = [(drawn,) for drawn in tokens]
        phases = (PhasePlan(1, 0, total, 0 if total_steps else None, total_steps),)
    else:
        phase_tokens, phases = _two_phases(
            components, tokens, total, last_fraction, batch_tokens, total_steps
        )

    plans = []
    for component, drawn, by_phase in zip(components, tokens, phase_tokens, strict=True):
        repeat = Fraction(drawn, component.unique_tokens)
        plans.append(
            ComponentPlan(
                name=component.name,
                kind="export" if isinstance(component, ExportComponent) else "corpus",
                unique_tokens=component.unique_tokens,
                locations=component.locations,
                tokens=drawn,
                fraction=Fraction(drawn, total),
                repeat=repeat,
                phase_tokens=by_phase,
                warnings=_component_warnings(component, drawn, repeat, max_epochs),
            )
        )
    return MixturePlan(
        total_tokens=total,
        seq_len=seq_len,
        max_epochs=max_epochs,
        last_fraction=last_fraction,
        batch_tokens=batch_tokens,
        total_steps=total_steps,
        components=tuple(plans),
        phases=phases,
        plan_warnings=tuple(plan_warnings),
    )


def render_summary(plan: MixturePlan) -> str:
    """A plain-text table of the plan, its phases and its warnings."""
    lines = [
        "PriorForge mixture plan",
        f"total tokens: {plan.total_tokens:,}",
        f"sequence length: {plan.seq_len}",
        f"max epochs before a warning: {_num(plan.max_epochs)}",
    ]
    if plan.batch_tokens is not None:
        lines.append(f"global batch: {plan.batch_tokens:,} tokens, {plan.total_steps:,} steps")
    lines.append(f"schedule: {_schedule_words(plan)}")
    lines.append("")
    header = ("component", "kind", "unique tokens", "tokens drawn", "share", "repeat", "epochs")
    rows = [
        (
            c.name,
            c.kind,
            f"{c.unique_tokens:,}",
            f"{c.tokens:,}",
            _percent(c.fraction),
            _num(c.repeat),
            str(c.epochs),
        )
        for c in plan.components
    ]
    lines.extend(_table(header, rows))
    if len(plan.phases) > 1:
        lines.append("")
        for phase in plan.phases:
            shares = ", ".join(
                f"{c.name} {_percent(plan.share(c, phase))}"
                for c in plan.components
                if c.phase_tokens[phase.number - 1]
            )
            lines.append(f"{_phase_words(phase)}: {shares}")
    lines.append("")
    lines.append("warnings:" if plan.warnings else "warnings: none")
    lines.extend(f"- {warning}" for warning in plan.warnings)
    return "\n".join(lines) + "\n"


# Megatron-LM


@dataclass(frozen=True)
class WeightedPath:
    """One `weight prefix` pair; the weight is the prefix's share of the phase's tokens."""

    weight: float
    path: str


@dataclass(frozen=True)
class BlendPhase:
    number: int
    blend: tuple[WeightedPath, ...]

    @property
    def data_path_args(self) -> tuple[str, ...]:
        """The words after `--data-path`: weight, prefix, weight, prefix, ..."""
        return tuple(word for pair in self.blend for word in (_num(pair.weight), pair.path))

    @property
    def data_args_file(self) -> str:
        """The `--data-args-path` file: the same words, which Megatron reads with split()."""
        return "".join(f"{_num(pair.weight)} {pair.path}\n" for pair in self.blend)


@dataclass(frozen=True)
class MegatronConfig:
    phases: tuple[BlendPhase, ...]
    phase_transition_iteration: int | None
    files: tuple[ConfigFile, ...]

    @property
    def text(self) -> str:
        return self.files[0].content


def megatron_config(plan: MixturePlan) -> MegatronConfig:
    """Megatron-LM: a bash fragment with the `--data-path` words, and `--data-args-path` files.

    Confirmed in NVIDIA/Megatron-LM: megatron/training/arguments.py (`--data-path` nargs='*',
    `--data-args-path` exclusive with it, `--phase-transition-iterations`),
    megatron/training/utils/common_utils.py (the args file is read with `f.read().split()`),
    megatron/core/datasets/utils.py (`get_blend_from_list`, `normalize`) and
    megatron/training/training.py (save and exit at each transition iteration; samples and
    consumption counted per phase on relaunch).
    """
    phases = _blend_phases(plan, "Megatron-LM")
    for phase in phases:
        for pair in phase.blend:
            _printable(pair.path)
            if any(ch.isspace() for ch in pair.path):
                raise MixtureError(
                    f"Megatron prefix {pair.path!r} holds whitespace, and Megatron splits the "
                    "data-args file on whitespace: move the dataset to a path without spaces"
                )
    transition = _switch_step(plan, "Megatron-LM's --phase-transition-iterations")
    lines = _comment_header(plan, "Megatron-LM data blend")
    lines += [
        "# Weights are shares of training tokens; Megatron normalizes them",
        "# (megatron/core/datasets/utils.py normalize) and draws samples in that proportion.",
        "# The repeats assume each prefix is all training data. With --data-path, Megatron",
        '# splits every prefix by --split (when unset, the legacy "969, 30, 1" holds out 3.1%',
        "# for validation and test), which raises the realized repeats by 1000/969. To keep",
        "# them as planned use --split 100,0,0 and evaluate on held-out data separately.",
    ]
    if transition is None:
        lines += [
            "DATA_PATH=(",
            *_bash_pairs(phases[0]),
            ")",
            '# Pass: --data-path "${DATA_PATH[@]}"',
            "# or write megatron.data_args and pass: --data-args-path megatron.data_args",
        ]
        files = [ConfigFile("megatron.data_args", phases[0].data_args_file)]
    else:
        lines += _phase_comments(plan)
        lines += [
            "# Megatron saves a checkpoint and exits at the transition iteration",
            "# (megatron/training/training.py); relaunch with the phase 2 blend and --load.",
            "# The global batch size must stay the same (checked on load).",
            f"PHASE_TRANSITION_ITERATIONS={transition}",
        ]
        files = []
        for phase in phases:
            lines += [f"PHASE{phase.number}_DATA_PATH=(", *_bash_pairs(phase), ")"]
            files.append(
                ConfigFile(f"megatron.phase{phase.number}.data_args", phase.data_args_file)
            )
        lines += [
            '# Launch 1: --data-path "${PHASE1_DATA_PATH[@]}" --phase-transition-iterations \\',
            "#   $PHASE_TRANSITION_ITERATIONS --save CHECKPOINTS",
            '# Launch 2: --data-path "${PHASE2_DATA_PATH[@]}" --phase-transition-iterations \\',
            "#   $PHASE_TRANSITION_ITERATIONS --save CHECKPOINTS --load CHECKPOINTS",
            "# (or --data-args-path megatron.phase1.data_args / megatron.phase2.data_args)",
        ]
    script = ConfigFile("megatron.sh", "\n".join(lines) + "\n")
    return MegatronConfig(phases, transition, (script, *files))


# GPT-NeoX


@dataclass(frozen=True)
class NeoXConfig:
    phases: tuple[BlendPhase, ...]
    valid_data_paths: tuple[str, ...]
    test_data_paths: tuple[str, ...]
    exit_interval: int | None
    files: tuple[ConfigFile, ...]

    @property
    def text(self) -> str:
        return self.files[0].content


def neox_config(
    plan: MixturePlan, *, valid_data_paths: Sequence[str], test_data_paths: Sequence[str]
) -> NeoXConfig:
    """GPT-NeoX: a YAML fragment per phase with `train_data_paths` and `train_data_weights`.

    Confirmed in EleutherAI/gpt-neox: megatron/neox_arguments/neox_args.py (the keys,
    `weight_by_num_documents` default false and overriding the weights when true,
    `exit_interval`, `extra_save_iters`), megatron/neox_arguments/arguments.py (valid and test
    paths are required once train paths are set; keys may not repeat across config files; `-`
    and `_` are the same) and megatron/data/data_utils.py (weights normalized, samples drawn in
    proportion; on resume the loader skips the iterations already trained).
    """
    valid = tuple(valid_data_paths)
    test = tuple(test_data_paths)
    if not valid or not test:
        raise MixtureError(
            "GPT-NeoX requires valid and test prefixes once train_data_paths is set "
            "(megatron/neox_arguments/arguments.py): pass held-out valid_data_paths and "
            "test_data_paths"
        )
    phases = _blend_phases(plan, "GPT-NeoX")
    switch = _switch_step(plan, "GPT-NeoX's exit_interval")
    files = []
    for phase in phases:
        lines = _comment_header(plan, "GPT-NeoX data config")
        lines += [
            "# Give this file alongside the model config. NeoX refuses keys repeated across",
            "# files, and train/valid/test paths exclude data_path: remove those from the others.",
            "# Weights are shares of training tokens; NeoX normalizes them.",
        ]
        if plan.total_steps is not None:
            lines.append(f"# train_iters for the whole run: {plan.total_steps}")
        if switch is not None:
            lines += _phase_comments(plan)
            if phase.number == 1:
                lines += [
                    "# Phase 1 of 2: NeoX saves (extra_save_iters) and exits (exit_interval)",
                    f"# at iteration {switch}; then launch phase 2 with its file, the same",
                    "# train_iters and load set to this run's save directory.",
                ]
            else:
                lines += [
                    f"# Phase 2 of 2: resume from the iteration {switch} checkpoint (load) with",
                    "# the same train_iters; NeoX skips the batches of the iterations trained.",
                ]
        lines.append("train_data_paths:")
        lines += [f"  - {_yaml_str(pair.path)}" for pair in phase.blend]
        lines.append("train_data_weights:")
        lines += [f"  - {_num(pair.weight)}" for pair in phase.blend]
        lines.append("valid_data_paths:")
        lines += [f"  - {_yaml_str(path)}" for path in valid]
        lines.append("test_data_paths:")
        lines += [f"  - {_yaml_str(path)}" for path in test]
        lines.append("# true would replace the weights above with ones from document counts")
        lines.append("weight_by_num_documents: false")
        if switch is not None and phase.number == 1:
            lines.append(f"exit_interval: {switch}")
            lines.append(f"extra_save_iters: [{switch}]")
        name = "neox_data.yml" if switch is None else f"neox_data.phase{phase.number}.yml"
        files.append(ConfigFile(name, "\n".join(lines) + "\n"))
    return NeoXConfig(phases, valid, test, switch, tuple(files))


# MosaicML streaming and llm-foundry


@dataclass(frozen=True)
class StreamSpec:
    """The keyword arguments of one `streaming.Stream`: absolute weighting by `repeat`.

    `name` is the component's name made an identifier, the key llm-foundry's YAML needs.
    """

    component: str
    name: str
    remote: str | None
    local: str | None
    split: str | None
    repeat: float


@dataclass(frozen=True)
class StreamsPhase:
    """One epoch of these streams is the phase."""

    number: int
    streams: tuple[StreamSpec, ...]


@dataclass(frozen=True)
class StreamingConfig:
    phases: tuple[StreamsPhase, ...]
    files: tuple[ConfigFile, ...]

    @property
    def text(self) -> str:
        return self.files[0].content


# What holds for both the streaming snippet and the llm-foundry YAML. PriorForge MDS samples
# are whole documents (app/datasets/exports/mds.py), one padded row each, so a step holds an
# unknown number of tokens: phases are counted in epochs of their streams, never in steps.
_STREAMS_NOTES = [
    "# repeat multiplies a stream's samples (streaming/base/stream.py). Every stream here",
    "# uses repeat, so leave StreamingDataset's epoch_size unset (it is refused with",
    "# absolute weights): one epoch of these streams is then the planned tokens.",
    "# A PriorForge MDS sample is one document, so count the run in epochs (max_duration",
    "# 1ep), not steps, and keep the loader's max_seq_len at or above the longest document:",
    "# tokens past it are not drawn.",
]
# Composer restores a StreamingDataset's position and the timestamp from a checkpoint
# (composer/core/state.py `dataset_state`, composer/trainer/trainer.py spin_dataloaders), and
# its schedulers span each run's max_duration (composer/optim/scheduler.py t_max '1dur'). What
# a second run on other streams should restore was not confirmed, so it is left to the reader.
_COMPOSER_TWO_RUNS = [
    "# Streaming has no data schedule: train one epoch of the phase 1 streams, then run",
    "# one epoch of the phase 2 streams from the phase 1 checkpoint (load_path): max_duration",
    "# 2ep if the checkpoint's timestamp is kept, 1ep if reset. Composer restores the",
    "# dataset position with the checkpoint and the phase 2 streams must start at their",
    "# beginning (see load_ignore_keys, state/dataset_state, spin_dataloaders); its LR",
    "# schedulers span each run's max_duration. Not verified end to end here.",
]


def streaming_config(plan: MixturePlan) -> StreamingConfig:
    """MosaicML streaming: a Python snippet building `Stream(remote=, local=, repeat=)` lists.

    Confirmed in mosaicml/streaming streaming/base/stream.py: at most one of proportion, repeat
    and choose per stream; proportion (relative) cannot be mixed with repeat/choose
    (absolute); with absolute weights a stream contributes int(repeat * its samples) samples an
    epoch and StreamingDataset's epoch_size must be left unset. `repeat` is used because it is
    unit-free: `proportion` would weigh samples, and PriorForge MDS samples are documents of
    unequal length.
    """
    phases = _stream_phases(plan)
    lines = _comment_header(plan, "MosaicML streaming streams", steps=False) + _STREAMS_NOTES
    if len(phases) > 1:
        lines += _phase_comments(plan, steps=False) + _COMPOSER_TWO_RUNS
    lines += ["from streaming import Stream", ""]
    for phase in phases:
        variable = "streams" if len(phases) == 1 else f"phase{phase.number}_streams"
        lines.append(f"{variable} = [")
        for stream in phase.streams:
            lines.append(f"    # {stream.component}")
            lines.append("    Stream(")
            for key, value in (
                ("remote", stream.remote),
                ("local", stream.local),
                ("split", stream.split),
            ):
                if value is not None:
                    lines.append(f"        {key}={_python_str(value)},")
            lines.append(f"        repeat={_num(stream.repeat)},")
            lines.append("    ),")
        lines.append("]")
    return StreamingConfig(phases, (ConfigFile("streams.py", "\n".join(lines) + "\n"),))


@dataclass(frozen=True)
class LLMFoundryConfig:
    phases: tuple[StreamsPhase, ...]
    files: tuple[ConfigFile, ...]

    @property
    def text(self) -> str:
        return self.files[0].content


def llm_foundry_config(plan: MixturePlan) -> LLMFoundryConfig:
    """llm-foundry: `train_loader.dataset.streams` YAML, one file per phase.

    Confirmed in mosaicml/llm-foundry llmfoundry/data/text_data.py: `build_streams` makes
    `Stream(**stream)` of each value of the `streams` mapping, so the keys are Stream's
    keyword arguments; MDS `tokens` arrays are cut to `max_seq_len`
    (`_read_binary_tokenized_sample`). Streaming semantics as in `streaming_config`.
    """
    phases = _stream_phases(plan)
    files = []
    for phase in phases:
        lines = _comment_header(plan, "llm-foundry train_loader streams", steps=False)
        lines += _STREAMS_NOTES
        lines += [
            "# Merge into the training YAML and remove dataset.remote, dataset.local and",
            "# dataset.epoch_size there (StreamingDataset takes streams or remote/local, not",
            "# both). dataset.split becomes every stream's subdirectory unless a stream sets its",
            "# own; set dataset.token_encoding_type to the export's tokens dtype.",
        ]
        if len(phases) > 1:
            lines += _phase_comments(plan, steps=False) + _COMPOSER_TWO_RUNS
            lines.append(f"# This file: phase {phase.number} of 2.")
        lines += ["train_loader:", "  dataset:", "    streams:"]
        for stream in phase.streams:
            lines.append(f"      {stream.name}:")
            for key, value in (
                ("remote", stream.remote),
                ("local", stream.local),
                ("split", stream.split),
            ):
                if value is not None:
                    lines.append(f"        {key}: {_yaml_str(value)}")
            lines.append(f"        repeat: {_num(stream.repeat)}")
        name = (
            "llm_foundry_streams.yaml"
            if len(phases) == 1
            else f"llm_foundry_streams.phase{phase.number}.yaml"
        )
        files.append(ConfigFile(name, "\n".join(lines) + "\n"))
    return LLMFoundryConfig(phases, tuple(files))


# OLMo


@dataclass(frozen=True)
class OlmoListing:
    """How often a component's files are listed in a phase, and the share that realizes."""

    name: str
    paths: tuple[str, ...]
    copies: int
    planned_share: Fraction
    realized_share: Fraction


@dataclass(frozen=True)
class OlmoPhase:
    number: int
    tokens: int
    listings: tuple[OlmoListing, ...]

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(
            path for item in self.listings for _ in range(item.copies) for path in item.paths
        )


@dataclass(frozen=True)
class OlmoConfig:
    phases: tuple[OlmoPhase, ...]
    memmap_dtype: str
    realized_tokens: dict[str, Fraction]
    warnings: tuple[str, ...]
    files: tuple[ConfigFile, ...]

    @property
    def text(self) -> str:
        return self.files[0].content


def olmo_config(plan: MixturePlan, *, memmap_dtype: str) -> OlmoConfig:
    """OLMo: `data.paths`, each component's files listed a whole number of times.

    Confirmed in allenai/OLMo: olmo/data/__init__.py and olmo/data/memmap_dataset.py (paths
    are concatenated; a file listed twice is read twice; each file is cut into
    max_sequence_length chunks from offset 0 and its tail dropped; raw token arrays, no .npy
    header), olmo/data/iterable_dataset.py (one seeded permutation over all chunks per epoch,
    so a partial epoch holds each file in proportion), olmo/config.py (`memmap_dtype`,
    `restore_dataloader`), olmo/train.py (`restore_dataloader: false` resets the step and
    tokens seen; `stop_at`) and configs/official-1124/OLMo2-13B-stage2-*.yaml (upsampling by
    repeated paths; a second-stage run with `load_path` and `restore_dataloader: false`).
    """
    if memmap_dtype not in _OLMO_DTYPES:
        raise MixtureError(
            f"memmap_dtype {memmap_dtype!r} is not one OLMo reads: use one of "
            f"{', '.join(_OLMO_DTYPES)}, the dtype the export's .npy files were written with"
        )
    for component in plan.components:
        if not component.locations.olmo_paths:
            raise MixtureError(
                f"{component.name} has no OLMo paths: set Locations.olmo_paths to its .npy files"
            )
    switch = _switch_step(plan, "OLMo's stop_at")
    phases = tuple(_olmo_phase(plan, phase) for phase in plan.phases)
    realized = {
        c.name: sum(
            (
                item.realized_share * phase.tokens
                for phase in phases
                for item in phase.listings
                if item.name == c.name
            ),
            Fraction(0),
        )
        for c in plan.components
    }
    warnings = []
    for c in plan.components:
        repeat = realized[c.name] / c.unique_tokens
        if repeat > plan.max_epochs and c.repeat <= plan.max_epochs:
            warnings.append(
                f"{c.name}: whole-file copies raise its repeat to {_short(repeat)}, more than "
                f"max_epochs {_num(plan.max_epochs)}"
            )
    files = []
    for phase in phases:
        lines = _comment_header(plan, "OLMo data config")
        lines.extend(f"# WARNING: {warning}" for warning in warnings)
        lines += [
            "# OLMo repeats a file by listing it again. Copies are whole numbers, so the",
            "# realized shares below differ from the plan; the run stops within the listing's",
            "# shuffled epoch, so each document is drawn about repeat times on average rather",
            "# than exactly. Each file's last partial max_sequence_length chunk is dropped.",
        ]
        if switch is not None:
            lines += _phase_comments(plan)
            if phase.number == 1:
                lines += [
                    "# Phase 1 of 2: max_duration is the whole run so the schedule spans it;",
                    f"# stop_at ends this run at step {switch}.",
                ]
            else:
                lines += [
                    "# Phase 2 of 2, as OLMo 2's stage-2 configs: load_path is the phase 1",
                    "# checkpoint and restore_dataloader: false, which resets the step count, so",
                    "# the LR schedule restarts here: set this run's scheduler explicitly.",
                ]
        lines += ["data:", f"  memmap_dtype: {memmap_dtype}", "  paths:"]
        for item in phase.listings:
            component = plan.component(item.name)
            repeat = realized[item.name] / component.unique_tokens
            copies = "copy" if item.copies == 1 else "copies"
            lines.append(
                f"    # {item.name}: {item.copies} {copies}, {_percent(item.realized_share)}"
                f" of the tokens (planned {_percent(item.planned_share)}),"
                f" run repeat {_short(repeat)}"
            )
            for _ in range(item.copies):
                lines += [f"    - {_yaml_str(path)}" for path in item.paths]
        if switch is not None:
            if phase.number == 1:
                lines.append(f'max_duration: "{plan.total_tokens}T"')
                lines.append(f"stop_at: {switch}")
            else:
                lines.append(f'max_duration: "{phase.tokens}T"')
                lines.append("restore_dataloader: false")
        name = "olmo_data.yaml" if switch is None else f"olmo_data.phase{phase.number}.yaml"
        files.append(ConfigFile(name, "\n".join(lines) + "\n"))
    return OlmoConfig(phases, memmap_dtype, realized, tuple(warnings), tuple(files))


# Planning helpers


def _positive_int(value: int, field: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise MixtureError(f"{field} must be a positive whole number ({what}), got {value!r}")
    return value


def _exact(value: Fraction | float, field: str) -> Fraction:
    """The number as written: 0.01 is one hundredth, not the binary double nearest to it."""
    if isinstance(value, bool):
        raise MixtureError(f"{field} must be a number, got {value!r}")
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MixtureError(f"{field} must be a finite number, got {value!r}")
        return Fraction(repr(value))
    raise MixtureError(f"{field} must be a number, got {value!r}")


def _batch_tokens(spec: MixtureSpec, seq_len: int) -> int | None:
    sequences, tokens = spec.global_batch_sequences, spec.global_batch_tokens
    if sequences is not None and tokens is not None:
        raise MixtureError(
            "give the global batch as global_batch_sequences or global_batch_tokens, not both"
        )
    if sequences is not None:
        return _positive_int(sequences, "global_batch_sequences", "sequences a step") * seq_len
    if tokens is not None:
        _positive_int(tokens, "global_batch_tokens", "tokens a step")
        if tokens % seq_len:
            raise MixtureError(
                f"global_batch_tokens {tokens} is not a multiple of seq_len {seq_len}: "
                "give the batch in sequences (global_batch_sequences) instead"
            )
        return tokens
    return None


def _check_names(components: Sequence[Component]) -> None:
    seen: set[str] = set()
    rest = 0
    for component in components:
        if isinstance(component, ExportComponent):
            if not _EXPORT_NAME.match(component.dataset):
                raise MixtureError(
                    f"export {component.dataset!r} must be named dataset@version, "
                    "e.g. aligned-discourse@3"
                )
            if (component.fraction is None) == (component.repeat is None):
                raise MixtureError(
                    f"{component.dataset}: give exactly one of fraction (a share of the budget) "
                    "and repeat (passes over its unique tokens)"
                )
        elif component.fraction is None:
            rest += 1
        if not component.name.strip():
            raise MixtureError("every component needs a name")
        if component.name in seen:
            raise MixtureError(f"two components are named {component.name!r}: rename one")
        seen.add(component.name)
        _positive_int(component.unique_tokens, f"{component.name}: unique_tokens", "from its index")
    if rest > 1:
        raise MixtureError(
            f"{rest} corpus components take the rest of the budget; at most one may: "
            "give the others a fraction"
        )


def _budget_weights(components: Sequence[Component], total: int) -> list[Fraction]:
    """Each component's exact share of the budget; the rest component gets what is left."""
    weights: list[Fraction | None] = []
    for component in components:
        if isinstance(component, ExportComponent) and component.repeat is not None:
            repeat = _exact(component.repeat, f"{component.name}: repeat")
            if repeat <= 0:
                raise MixtureError(f"{component.name}: repeat must be positive, got {repeat}")
            weights.append(repeat * component.unique_tokens / total)
        elif component.fraction is not None:
            fraction = _exact(component.fraction, f"{component.name}: fraction")
            if not 0 < fraction <= 1:
                raise MixtureError(
                    f"{component.name}: fraction must be in (0, 1], got {component.fraction!r}"
                    " (0.01 is 1% of the budget)"
                )
            weights.append(fraction)
        else:
            weights.append(None)
    fixed = sum((w for w in weights if w is not None), Fraction(0))
    if fixed > 1:
        raise MixtureError(
            f"the components take {_percent(fixed)} of total_tokens {total}; lower their "
            "fractions or repeats until they fit in 100%"
        )
    if None in weights:
        if fixed == 1:
            raise MixtureError(
                "the other components already take 100% of the budget, leaving nothing for the "
                "rest component: lower their fractions or give the rest a fraction"
            )
        return [1 - fixed if w is None else w for w in weights]
    if fixed < 1:
        raise MixtureError(
            f"the components take {_percent(fixed)} of the budget and none takes the rest: "
            "add the team corpus with fraction=None, or make the fractions add up to 1"
        )
    return [w for w in weights if w is not None]


def _apportion(total: int, weights: Sequence[Fraction]) -> list[int]:
    """Whole numbers in proportion to the weights, summing exactly to `total`.

    Largest remainders (Hamilton), ties to the earlier component: deterministic, and never
    more than one token from the exact share.
    """
    weight_sum = sum(weights, Fraction(0))
    exact = [total * w / weight_sum for w in weights]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _two_phases(
    components: Sequence[Component],
    tokens: Sequence[int],
    total: int,
    last_fraction: Fraction,
    batch_tokens: int | None,
    total_steps: int | None,
) -> tuple[list[tuple[int, ...]], tuple[PhasePlan, PhasePlan]]:
    """Exports only in phase 2; each corpus component split between phases in proportion."""
    corpus = [i for i, c in enumerate(components) if isinstance(c, CorpusComponent)]
    if not corpus:
        raise MixtureError(
            "with exports only in the last part of the run, the first part needs a corpus: "
            "add the team corpus, or set schedule.last_fraction to 1"
        )
    first_share = (1 - last_fraction) * total
    switch_step: int | None = None
    if batch_tokens is None:
        first = round(first_share)
    else:
        switch_step = round(first_share / batch_tokens)
        first = min(switch_step * batch_tokens, total)
    if not 0 < first < total:
        raise MixtureError(
            f"schedule.last_fraction {_num(last_fraction)} leaves no whole "
            f"{'step' if batch_tokens else 'token'} for one of the two phases: "
            "use 1 for the whole run or a fraction further from 0 and 1"
        )
    second = total - first
    export_tokens = sum(t for i, t in enumerate(tokens) if i not in corpus)
    if export_tokens > second:
        raise MixtureError(
            f"the exports draw {export_tokens} tokens but the last part of the run holds "
            f"{second}: raise schedule.last_fraction to at least "
            f"{_num(Fraction(export_tokens, total))} or lower the exports' fractions"
        )
    first_split = _apportion(first, [Fraction(tokens[i]) for i in corpus])
    by_phase: list[tuple[int, ...]] = []
    for i, drawn in enumerate(tokens):
        if i in corpus:
            in_first = first_split[corpus.index(i)]
            by_phase.append((in_first, drawn - in_first))
        else:
            by_phase.append((0, drawn))
    steps_second = None if total_steps is None or switch_step is None else total_steps - switch_step
    phases = (
        PhasePlan(1, 0, first, 0 if switch_step is not None else None, switch_step),
        PhasePlan(2, first, second, switch_step, steps_second),
    )
    return by_phase, phases


def _component_warnings(
    component: Component, drawn: int, repeat: Fraction, max_epochs: Fraction
) -> tuple[str, ...]:
    warnings = []
    if isinstance(component, CorpusComponent) and repeat > 1:
        warnings.append(
            f"{component.name} is repeated {_num(repeat)} times: it holds "
            f"{component.unique_tokens:,} unique tokens for {drawn:,} drawn"
        )
    if repeat > max_epochs:
        warnings.append(
            f"{component.name} repeats {_num(repeat)} times, more than max_epochs "
            f"{_num(max_epochs)}: give it more unique tokens or a smaller share"
        )
    return tuple(warnings)


def _switch_step(plan: MixturePlan, what: str) -> int | None:
    if len(plan.phases) == 1:
        return None
    step = plan.phases[1].start_step
    if step is None:
        raise MixtureError(
            f"a two-phase plan needs the step to switch at for {what}: "
            "give global_batch_sequences (or global_batch_tokens)"
        )
    return step


# Rendering helpers


def _blend_phases(plan: MixturePlan, framework: str) -> tuple[BlendPhase, ...]:
    phases = []
    for phase in plan.phases:
        blend = []
        for component in plan.components:
            share = plan.share(component, phase)
            if share == 0:
                continue
            for prefix, part in _prefix_parts(component, framework):
                blend.append(WeightedPath(float(share * part), prefix))
        phases.append(BlendPhase(phase.number, tuple(blend)))
    return tuple(phases)


def _prefix_parts(component: ComponentPlan, framework: str) -> list[tuple[str, Fraction]]:
    """Each prefix with its part of the component's tokens."""
    prefixes = component.locations.megatron_prefixes
    if not prefixes:
        raise MixtureError(
            f"{component.name} has no {framework} prefix: set Locations.megatron_prefixes "
            "(the path without .bin/.idx)"
        )
    if len(prefixes) == 1:
        only = prefixes[0]
        if only.tokens is not None and only.tokens != component.unique_tokens:
            raise MixtureError(
                f"{component.name}: prefix {only.path} holds {only.tokens} tokens but the "
                f"component {component.unique_tokens}: make them agree"
            )
        return [(only.path, Fraction(1))]
    counts = [p.tokens for p in prefixes]
    if any(c is None or isinstance(c, bool) or c <= 0 for c in counts):
        raise MixtureError(
            f"{component.name} has {len(prefixes)} prefixes: give each MegatronPrefix its "
            "token count so the weight can be split in proportion"
        )
    known = [c for c in counts if c is not None]
    if sum(known) != component.unique_tokens:
        raise MixtureError(
            f"{component.name}: its prefixes hold {sum(known)} tokens but unique_tokens is "
            f"{component.unique_tokens}: make them agree"
        )
    return [
        (p.path, Fraction(c, component.unique_tokens)) for p, c in zip(prefixes, known, strict=True)
    ]


def _stream_phases(plan: MixturePlan) -> tuple[StreamsPhase, ...]:
    names: dict[str, str] = {}
    for component in plan.components:
        locations = component.locations
        if locations.mds_remote is None and locations.mds_local is None:
            raise MixtureError(
                f"{component.name} has no MDS location: set Locations.mds_remote and/or mds_local"
            )
        name = _NOT_IDENTIFIER.sub("_", component.name).strip("_") or "stream"
        if name in names.values():
            raise MixtureError(
                f"{component.name} and another component both become stream {name!r}: rename one"
            )
        names[component.name] = name
    phases = []
    for phase in plan.phases:
        streams = []
        for component in plan.components:
            drawn = component.phase_tokens[phase.number - 1]
            if not drawn:
                continue
            locations = component.locations
            streams.append(
                StreamSpec(
                    component=component.name,
                    name=names[component.name],
                    remote=locations.mds_remote,
                    local=locations.mds_local,
                    split=locations.mds_split,
                    repeat=float(Fraction(drawn, component.unique_tokens)),
                )
            )
        phases.append(StreamsPhase(phase.number, tuple(streams)))
    return tuple(phases)


def _olmo_phase(plan: MixturePlan, phase: PhasePlan) -> OlmoPhase:
    """Whole copies per component, scaled so the most diluted component is listed once."""
    present = [c for c in plan.components if c.phase_tokens[phase.number - 1]]
    shares = {c.name: plan.share(c, phase) for c in present}
    # The listing's size, in tokens, at which each component's exact copy count is its share
    # times that size over its unique tokens; at the largest such size no count is below 1.
    size = max(c.unique_tokens / shares[c.name] for c in present)
    copies = {c.name: max(1, round(shares[c.name] * size / c.unique_tokens)) for c in present}
    most = max(present, key=lambda c: copies[c.name])
    if copies[most.name] > _OLMO_MAX_COPIES:
        diluted = min(present, key=lambda c: copies[c.name])
        raise MixtureError(
            f"OLMo would list {most.name}'s files {copies[most.name]} times in phase "
            f"{phase.number} to keep {diluted.name}, listed once, at "
            f"{_percent(shares[diluted.name])}: list only part of {diluted.name}'s files "
            "(a smaller unique_tokens), or use a framework that weighs datasets"
        )
    listed = sum(copies[c.name] * c.unique_tokens for c in present)
    listings = tuple(
        OlmoListing(
            name=c.name,
            paths=c.locations.olmo_paths,
            copies=copies[c.name],
            planned_share=shares[c.name],
            realized_share=Fraction(copies[c.name] * c.unique_tokens, listed),
        )
        for c in present
    )
    return OlmoPhase(phase.number, phase.tokens, listings)


def _comment_header(plan: MixturePlan, title: str, *, steps: bool = True) -> list[str]:
    known = steps and plan.total_steps is not None
    lines = [
        f"# {title}, generated by PriorForge from a mixture plan.",
        f"# Run: {plan.total_tokens:,} tokens, sequence length {plan.seq_len}"
        + (f", {plan.total_steps:,} steps." if known else "."),
    ]
    for c in plan.components:
        lines.append(
            f"# {c.name}: {c.tokens:,} tokens drawn ({_percent(c.fraction)}), "
            f"{c.unique_tokens:,} unique, repeat {_num(c.repeat)}"
        )
    lines.extend(f"# WARNING: {warning}" for warning in plan.warnings)
    return lines


def _phase_comments(plan: MixturePlan, *, steps: bool = True) -> list[str]:
    lines = [f"# Schedule: {_schedule_words(plan)}."]
    for phase in plan.phases:
        shares = ", ".join(
            f"{c.name} {_percent(plan.share(c, phase))}"
            for c in plan.components
            if c.phase_tokens[phase.number - 1]
        )
        lines.append(f"# {_phase_words(phase, steps=steps)}: {shares}")
    lines.append(
        "# The corpus is drawn afresh in each phase, so some of its documents may appear in"
    )
    lines.append("# both phases even where it is not repeated overall.")
    return lines


def _schedule_words(plan: MixturePlan) -> str:
    if len(plan.phases) == 1:
        return "exports over the whole run"
    return f"exports in the last {_percent(plan.last_fraction)} of the run only, in phase 2"


def _phase_words(phase: PhasePlan, *, steps: bool = True) -> str:
    end = phase.start_token + phase.tokens
    words = f"phase {phase.number}: tokens {phase.start_token:,} to {end:,}"
    if steps and phase.start_step is not None and phase.steps is not None:
        words += f", steps {phase.start_step:,} to {phase.start_step + phase.steps:,}"
    return words


def _bash_pairs(phase: BlendPhase) -> list[str]:
    return [f"  {_num(pair.weight)} {shlex.quote(pair.path)}" for pair in phase.blend]


def _num(value: Fraction | float) -> str:
    """A float's shortest round-trip digits, positional, always with a point.

    PyYAML (which GPT-NeoX loads configs with) reads `1e-05` as a string and `1` as an int;
    `0.00001` and `1.0` are floats to every reader here.
    """
    text = repr(float(value))
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    if "." not in text:
        text += ".0"
    return text


def _percent(value: Fraction) -> str:
    return f"{float(value * 100):.6f}%"


def _python_str(value: str) -> str:
    return repr(_printable(value))


def _yaml_str(value: str) -> str:
    # A JSON string is a YAML double-quoted scalar; with only printable characters (no YAML
    # line breaks such as U+2028) no character can change its meaning.
    return json.dumps(_printable(value), ensure_ascii=False)


def _printable(value: str) -> str:
    if not value or not value.isprintable():
        raise MixtureError(
            f"location {value!r} is empty or holds a control or line-break character: "
            "give the path as plain text"
        )
    return value


def _short(value: Fraction | float) -> str:
    """Six significant digits, for comments and warnings that people read."""
    return f"{float(value):.6g}"


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return [
        "  ".join(
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in (header, *rows)
    ]

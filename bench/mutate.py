"""Mutation testing of the core modules with mutmut (`make mutate`); not part of `make test`.

Each module runs on its own, against the tests that exercise it. mutmut copies the tree into
mutants/, runs those tests once to learn which test reaches which function, then runs one forked
pytest session per mutant (two at a time by default) with only the tests that reach the mutated
function. A mutant that no test fails "survived": the tests would not notice that change.

    python bench/mutate.py                          # every core module, one after another
    python bench/mutate.py app/quality/gates.py     # one module (a folder works too: app/dedup)
    python bench/mutate.py app/x.py --tests tests/x # a module not in MODULES
    mutmut show app.quality.gates.x_length__mutmut_3  # afterwards: one mutant's diff

The summary at the end has a line per module (mutants, killed, survived, kill rate) and each
survivor as path:line, the line as written and the line as mutated.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Surviving mutants known to change nothing observable, each with the reason.
EQUIVALENT = ROOT / "bench" / "equivalent_mutants.toml"
# Each module's outcome, so that `--report` can show it again (with the current rules).
RESULTS = ROOT / "mutants-results"

# Module (file or folder) -> the tests that exercise it. Tests that start real Celery workers
# (marker `worker`) are left out: the worker is another process and would not run the mutant.
MODULES: dict[str, list[str]] = {
    "app/jobs/service.py": ["tests/jobs", "tests/generation", "tests/datasets", "tests/scenarios"],
    "app/jobs/repository.py": ["tests/jobs"],
    "app/jobs/tally.py": ["tests/jobs/test_tally.py", "tests/jobs/test_progress.py"],
    "app/generation/pipeline.py": ["tests/generation", "tests/jobs"],
    "app/dedup": ["tests/dedup", "tests/generation/test_cleaning_and_gates.py"],
    "app/quality": ["tests/quality", "tests/generation"],
    "app/quality/gates.py": [
        "tests/quality/test_gates.py",
        "tests/generation/test_cleaning_and_gates.py",
    ],
    "app/quality/decontam.py": [
        "tests/quality/test_decontam.py",
        "tests/generation/test_judge_and_decontam.py",
        "tests/generation/test_job_settings.py",
    ],
    "app/quality/judge.py": [
        "tests/quality/test_judge.py",
        "tests/generation/test_judge_and_decontam.py",
    ],
    "app/datasets/service.py": ["tests/datasets"],
    "app/datasets/compaction.py": ["tests/datasets/test_compaction.py"],
    "app/datasets/mixtures.py": ["tests/datasets/test_mixtures.py"],
    "app/datasets/exports": ["tests/datasets/exports"],
    "app/pull": ["tests/pull"],
    "app/storage": ["tests/storage"],
    "app/teams/service.py": ["tests/teams"],
    "app/teams/keys.py": ["tests/teams"],
    "app/core/auth.py": ["tests/teams", "tests/core/test_guard.py", "tests/core/test_auth.py"],
}
# What `make mutate` runs with no module named (app/quality holds decontam, judge and gates).
CORE = [
    "app/jobs/service.py",
    "app/jobs/repository.py",
    "app/generation/pipeline.py",
    "app/dedup",
    "app/quality",
    "app/datasets/service.py",
    "app/teams/service.py",
    "app/teams/keys.py",
    "app/core/auth.py",
]


@dataclass
class Survivor:
    path: str
    line: int
    before: str
    after: str
    name: str
    function: str = ""  # "name" or "Class.name", as in EQUIVALENT rules
    equivalent: str = ""  # the reason, when a rule in EQUIVALENT says it changes nothing
    untested: bool = False  # no selected test reaches its function ("no tests")


@dataclass
class Outcome:
    module: str
    seconds: float
    counts: Counter[str] = field(default_factory=Counter)
    survivors: list[Survivor] = field(default_factory=list)

    @property
    def equivalent(self) -> int:
        return sum(1 for s in self.survivors if s.equivalent)

    @property
    def kill_rate(self) -> float:
        """Killed (or timed out) among the mutants that change behaviour: equivalent ones,
        which no test could fail, are left out; those no test reaches count as not killed."""
        killed = self.counts["killed"] + self.counts["timeout"]
        # A mutant no selected test reaches ("no tests") is a change nothing notices too.
        tested = killed + self.counts["survived"] + self.counts["no tests"] - self.equivalent
        return killed / tested if tested else 0.0


@dataclass(frozen=True)
class Rule:
    """Survivors of ``function`` in ``path`` whose line as written matches ``before`` and as
    mutated matches ``after`` (regular expressions, searched) change nothing observable."""

    path: str
    function: str
    reason: str
    before: str = ""
    after: str = ""

    def covers(self, survivor: Survivor) -> bool:
        return (
            survivor.path == self.path
            and survivor.function == self.function
            and re.search(self.before, survivor.before) is not None
            and re.search(self.after, survivor.after) is not None
        )


def load_rules(path: Path = EQUIVALENT) -> list[Rule]:
    with path.open("rb") as file:
        return [Rule(**rule) for rule in tomllib.load(file)["equivalent"]]


def classify(outcome: Outcome, rules: list[Rule]) -> None:
    for survivor in outcome.survivors:
        survivor.equivalent = next((r.reason for r in rules if r.covers(survivor)), "")


def save(outcome: Outcome) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / (outcome.module.replace("/", "_") + ".json")).write_text(
        json.dumps(
            {
                "module": outcome.module,
                "seconds": outcome.seconds,
                "counts": dict(outcome.counts),  # asdict() would turn a Counter inside out
                "survivors": [asdict(survivor) for survivor in outcome.survivors],
            },
            indent=1,
        )
    )


def saved(module: str) -> Outcome:
    path = RESULTS / (module.replace("/", "_") + ".json")
    if not path.exists():
        raise SystemExit(f"{module}: no saved results in {path}; run it first")
    data = json.loads(path.read_text())
    return Outcome(
        data["module"],
        data["seconds"],
        Counter(data["counts"]),
        [Survivor(**survivor) for survivor in data["survivors"]],
    )


def _configure(module: str, tests: list[str]) -> None:
    """Point mutmut at one module and its tests. mutmut reads [tool.mutmut] in pyproject.toml
    (the tree to copy, pytest's options); which module and which tests change per run."""
    from mutmut import configuration

    pattern = module + ("/*" if (ROOT / module).is_dir() else "")
    per_run: dict[str, Any] = {
        "only_mutate": [pattern],
        "pytest_add_cli_args_test_selection": tests,
    }
    from_pyproject = configuration._config_reader

    def reader() -> Callable[[str, Any], Any]:
        read = from_pyproject()
        return lambda key, default: per_run[key] if key in per_run else read(key, default)

    configuration._config_reader = reader
    configuration.reset_config()


def _function_lines(source: str) -> dict[str, tuple[int, int]]:
    """Top-level functions and methods -> (first line, last line), decorators included."""
    spans: dict[str, tuple[int, int]] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef):
            members = [(f"{node.name}.", m) for m in node.body]
        else:
            members = [("", node)]
        for prefix, member in members:
            if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([member.lineno] + [d.lineno for d in member.decorator_list])
                spans[prefix + member.name] = (first, member.end_lineno or member.lineno)
    return spans


def _survivor(
    name: str, path: Path, diff: str, source_lines: list[str], span: tuple[int, int]
) -> Survivor:
    removed = [
        line[1:]
        for line in diff.splitlines()
        if line.startswith("-") and not line.startswith("---")
    ]
    added = [
        line[1:]
        for line in diff.splitlines()
        if line.startswith("+") and not line.startswith("+++")
    ]
    # The first line the mutant changes locates it; all changed lines are shown (a removed
    # argument also moves the closing bracket), joined by " / ".
    first = removed[0].strip() if removed else ""
    line = span[0]
    for number in range(span[0], span[1] + 1):
        if first and source_lines[number - 1].strip() == first:
            line = number
            break
    before = " / ".join(text.strip() for text in removed)
    after = " / ".join(text.strip() for text in added) or "(removed)"
    return Survivor(str(path), line, before, after, name)


def _results(module: str, seconds: float) -> Outcome:
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code
    from mutmut.utils.file_utils import walk_mutatable_files
    from mutmut.utils.format_utils import orig_function_and_class_names_from_key

    outcome = Outcome(module, seconds)
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        source = (ROOT / path).read_text()
        spans = _function_lines(source)
        for name, exit_code in sorted(data.exit_code_by_key.items()):
            # mutmut counts pytest's internal error (exit 3) as a kill, but here it means the
            # session could not start (the database, say): no test ran against the mutant.
            status = "internal error" if exit_code == 3 else status_by_exit_code[exit_code]
            outcome.counts[status] += 1
            if status not in ("survived", "no tests"):
                continue
            function, cls = orig_function_and_class_names_from_key(name)
            function = function.rpartition(".")[-1]
            key = f"{cls}.{function}" if cls else function
            span = spans.get(key, (1, len(source.splitlines())))
            diff = get_diff_for_mutant(name, path=path)
            survivor = _survivor(name, path, diff, source.splitlines(), span)
            survivor.function = key
            survivor.untested = status == "no tests"
            outcome.survivors.append(survivor)
    outcome.survivors.sort(key=lambda s: (s.path, s.line, s.name))
    return outcome


@contextlib.contextmanager
def template_database() -> Iterator[None]:
    """A migrated database that every test session copies (tests/conftest.py reads
    PRIORFORGE_TEST_DB_TEMPLATE) instead of creating and migrating its own."""
    from sqlalchemy import create_engine, text

    from tests.services import PG_ADMIN_URL, database_url

    name = f"priorforge_mutate_template_{os.getpid()}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        # In a child process: importing app here would put the unmutated modules in
        # sys.modules of every forked mutmut run, and no test would reach a mutant.
        script = f"from app.core import migrate; migrate.upgrade({database_url(name)!r})"
        subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT)
        os.environ["PRIORFORGE_TEST_DB_TEMPLATE"] = name
        yield
    finally:
        os.environ.pop("PRIORFORGE_TEST_DB_TEMPLATE", None)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run_module(module: str, tests: list[str], max_children: int) -> Outcome:
    from mutmut.__main__ import cli

    if "app" in sys.modules:  # the tests would import it from here, not from mutants/
        raise SystemExit("app was imported before mutmut ran: no test could reach a mutant")
    _configure(module, tests)
    # A fresh copy per module: mutants/ holds one module's results (and the test-to-function
    # map for that module's tests); it stays after the run for `mutmut show` / `mutmut browse`.
    shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    print(f"\n=== {module}: mutmut against {' '.join(tests)}", flush=True)
    started = time.monotonic()
    try:
        cli(["run", "--max-children", str(max_children)], standalone_mode=False)
    except SystemExit as exc:  # mutmut exits non-zero when the unmutated tests fail
        if exc.code:
            raise
    return _results(module, time.monotonic() - started)


def _in_child(module: str, tests: list[str], max_children: int) -> Outcome:
    """``run_module`` in a forked process. mutmut keeps what it learned (which test reaches
    which function) in module globals: in one process the second module would reuse the
    first one's map."""
    fork = multiprocessing.get_context("fork")
    receive, send = fork.Pipe(duplex=False)

    def child() -> None:
        # The child ends as soon as its outcome is sent, without the exit handlers: those
        # would wait on the processes the tests left running (a worker's checking processes,
        # which end within a second of their parent), and hold the parent's join forever.
        try:
            outcome = run_module(module, tests, max_children)
        except BaseException:
            traceback.print_exc()
            code = 1
        else:
            send.send(outcome)
            code = 0
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    process = fork.Process(target=child)
    process.start()
    send.close()  # the child holds the only sending end: recv() fails if it dies
    try:
        outcome: Outcome = receive.recv()
    except EOFError:
        process.join()
        raise SystemExit(f"{module}: mutmut stopped (exit {process.exitcode})") from None
    process.join()
    return outcome


def report(outcomes: list[Outcome]) -> None:
    print("\n=== mutation testing: summary (kill rate: of the mutants that are not equivalent)")
    header = ("module", "mutants", "killed", "survived", "equiv.", "other", "kill", "time")
    print("{:<28} {:>7} {:>6} {:>8} {:>6} {:>5} {:>6} {:>7}".format(*header))
    for o in outcomes:
        total = sum(o.counts.values())
        other = total - o.counts["killed"] - o.counts["survived"]
        print(
            f"{o.module:<28} {total:>7} {o.counts['killed']:>6} {o.counts['survived']:>8} "
            f"{o.equivalent:>6} {other:>5} {o.kill_rate:>6.1%} {o.seconds:>6.0f}s"
        )
        for status, count in sorted(o.counts.items()):
            if status not in ("killed", "survived"):
                print(f"    {status}: {count}")
        if o.counts["no tests"]:
            print("    (no tests: reached by none of the module's tests; counted as not killed)")
        if o.counts["internal error"]:
            print("    (internal error: pytest failed outside the tests; not counted as killed)")
    for o in outcomes:
        live = [s for s in o.survivors if not s.equivalent]
        if live:
            print(
                f"\n--- survivors in {o.module} (path:line  as written  ->  as mutated  [mutant])"
            )
            for s in live:
                untested = "  (no test reaches it)" if s.untested else ""
                print(f"{s.path}:{s.line}  {s.before}  ->  {s.after}  [{s.name}]{untested}")
        by_reason: dict[str, list[Survivor]] = {}
        for s in o.survivors:
            if s.equivalent:
                by_reason.setdefault(s.equivalent, []).append(s)
        if by_reason:
            print(f"\n--- equivalent survivors in {o.module}, by reason ({EQUIVALENT.name})")
        for reason, group in by_reason.items():
            print(f"* {reason}")
            for s in group:
                print(f"    {s.path}:{s.line}  {s.before}  ->  {s.after}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "modules", nargs="*", help=f"files or folders under app/ (default: {' '.join(CORE)})"
    )
    parser.add_argument("--tests", nargs="+", help="test paths to use instead of those in MODULES")
    parser.add_argument(
        "--max-children", type=int, default=2, help="mutants run side by side (default 2)"
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="run nothing: show the saved results of the last run again, with today's rules",
    )
    args = parser.parse_args()
    modules = [m.rstrip("/") for m in args.modules] or CORE
    for module in modules:
        if not (ROOT / module).exists():
            parser.error(f"{module}: no such file or folder")
        if module not in MODULES and not args.tests:
            parser.error(f"{module}: no tests known for it; name them with --tests")
    rules = load_rules()
    outcomes = []
    with contextlib.ExitStack() as stack:
        if not args.report:
            stack.enter_context(template_database())
        for module in modules:
            outcomes.append(_outcome(module, args, rules))
    report(outcomes)


def _outcome(module: str, args: argparse.Namespace, rules: list[Rule]) -> Outcome:
    if args.report:
        outcome = saved(module)
    else:
        outcome = _in_child(module, args.tests or MODULES[module], args.max_children)
        save(outcome)
    classify(outcome, rules)
    return outcome


if __name__ == "__main__":
    os.chdir(ROOT)  # mutmut works in the current directory: it copies ./app into ./mutants
    main()

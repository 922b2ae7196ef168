"""Benchmark ``shoprec ingest``: wall time and peak memory against the targets of the issue.

Cases (each ingest is a separate ``shoprec ingest --json`` process in a fresh workspace):

* ``uci``      -- ``--format online-retail`` of the UCI Online Retail file (541,909 rows).
                 Target: median wall time <= 10 s.
* ``parquet``  -- ``--format parquet`` of ``events.parquet`` from ``shoprec generate --events N``.
                 Target (N = 10,000,000): median wall time <= 60 s, peak RSS <= 4 GB.
* ``reingest`` -- the same ``events.parquet`` again into the workspace of a ``parquet`` run: the
                 idempotency path, which must add 0 events. Reported, not gated.
* ``csv``      -- ``--format csv`` of ``events.csv`` from ``generate --events-format csv``.
                 Reported, not gated.

Run from the repository root::

    .venv/bin/python benchmarks/ingest.py                      # everything, 10M events, once
    .venv/bin/python benchmarks/ingest.py --repeat 3 --rev HEAD --out benchmarks/results.json
    .venv/bin/python benchmarks/ingest.py --cases uci --uci-repeat 5

Shared data comes from ``--shared-data``, else ``$SHOPREC_SHARED_DATA``, else ``../shared/data``
relative to the repository root. Generated shops and workspaces live in a temporary folder
(``--workdir`` chooses its parent) that is removed at the end. Generating the synthetic shop is
timed separately and reported as information only.

By default the children run the working tree (the editable install). ``--rev REV`` instead
benchmarks ``src/`` of a commit, extracted with ``git archive`` and put first on the children's
``PYTHONPATH``, so that edits made while the benchmark runs cannot change what it measures.

Wall time is measured around the child process (interpreter start-up included, as a user sees
it); peak memory is the child's ``ru_maxrss`` from ``os.wait4``. ``SHOPREC_*`` variables are
removed from the child's environment so that a local configuration cannot change the result.

Exit status: 0 when every check and gated target passes, 1 when an ingest failed or reported
wrong counts, 3 when a gated target was missed.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import REPO_ROOT, git

UCI_RELATIVE = Path("uci-online-retail") / "online_retail.csv"
UCI_ROWS = 541_909
TARGET_EVENTS = 10_000_000
GB = 1_000_000_000
MIB = 1024 * 1024
SEED = 7
ALL_CASES = ("uci", "parquet", "reingest", "csv")
EXIT_FAILED = 1
EXIT_MISSED_TARGET = 3

Report = dict[str, Any]
Check = Callable[[Report], list[str]]


class BenchmarkError(RuntimeError):
    """An ingest or generation failed, or reported counts that are wrong."""


@dataclass(frozen=True)
class Target:
    max_wall_s: float
    max_rss_bytes: int | None = None

    def describe(self) -> str:
        text = f"wall <= {self.max_wall_s:g} s"
        if self.max_rss_bytes is not None:
            text += f", RSS <= {self.max_rss_bytes / GB:g} GB"
        return text


TARGET_UCI = Target(10.0)
TARGET_10M = Target(60.0, 4 * GB)


@dataclass
class Run:
    """One child process: how long it took, its peak memory, and what it printed."""

    wall_s: float
    max_rss_bytes: int
    cpu_s: float
    exit_code: int
    timed_out: bool
    stdout: str
    stderr: str

    def summary(self) -> dict[str, Any]:
        return {
            "wall_s": round(self.wall_s, 3),
            "max_rss_mib": round(self.max_rss_bytes / MIB, 1),
            "max_rss_bytes": self.max_rss_bytes,
            "cpu_s": round(self.cpu_s, 3),
            "exit_code": self.exit_code,
        }


@dataclass
class CaseResult:
    name: str
    command: str
    target: Target | None
    gated: bool
    runs: list[Run] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)

    @property
    def median_wall_s(self) -> float:
        return statistics.median(r.wall_s for r in self.runs)

    @property
    def peak_rss_bytes(self) -> int:
        return max(r.max_rss_bytes for r in self.runs)

    @property
    def median_cpu_s(self) -> float:
        return statistics.median(r.cpu_s for r in self.runs)

    def meets_target(self) -> bool | None:
        """Median wall time and worst peak RSS against the target; ``None`` without one."""
        if self.target is None or not self.runs:
            return None
        rss_ok = (
            self.target.max_rss_bytes is None or self.peak_rss_bytes <= self.target.max_rss_bytes
        )
        return self.median_wall_s <= self.target.max_wall_s and rss_ok

    def verdict(self) -> str:
        met = self.meets_target()
        if met is None:
            return "-"
        if self.gated:
            return "PASS" if met else "FAIL"
        return "info: within" if met else "info: over"

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "target": None if self.target is None else asdict(self.target),
            "gated": self.gated,
            "verdict": self.verdict(),
            "median_wall_s": round(self.median_wall_s, 3) if self.runs else None,
            "peak_rss_mib": round(self.peak_rss_bytes / MIB, 1) if self.runs else None,
            "median_cpu_s": round(self.median_cpu_s, 3) if self.runs else None,
            "runs": [r.summary() for r in self.runs],
            "last_report": self.reports[-1] if self.reports else None,
        }


# -- running a child process ---------------------------------------------------------------------


def child_env(pythonpath: Path | None) -> dict[str, str]:
    """The current environment without ``SHOPREC_*`` settings (``SHOPREC_DEBUG`` is kept)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("SHOPREC_") or k == "SHOPREC_DEBUG"
    }
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def run_measured(argv: Sequence[str], scratch: Path, timeout_s: float, env: dict[str, str]) -> Run:
    """Run ``argv`` to completion; wall time, peak RSS and CPU time come from ``os.wait4``.

    Output goes to files, not pipes, so a chatty child can never block on a full pipe. A child
    still running after ``timeout_s`` is killed.
    """
    out_path, err_path = scratch / "stdout.txt", scratch / "stderr.txt"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            proc.kill()

        timer = threading.Timer(timeout_s, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
    exit_code = os.waitstatus_to_exitcode(status)
    proc.returncode = exit_code  # reaped by wait4; tell Popen so it does not wait again
    return Run(
        wall_s=wall,
        max_rss_bytes=usage.ru_maxrss * 1024,  # KiB on Linux
        cpu_s=usage.ru_utime + usage.ru_stime,
        exit_code=exit_code,
        timed_out=killed.is_set(),
        stdout=out_path.read_text(encoding="utf-8", errors="replace"),
        stderr=err_path.read_text(encoding="utf-8", errors="replace"),
    )


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def require_success(run: Run, what: str) -> None:
    if run.timed_out:
        raise BenchmarkError(f"{what}: killed after {run.wall_s:.0f} s (timeout)")
    if run.exit_code != 0:
        raise BenchmarkError(
            f"{what}: exit code {run.exit_code}\n--- stderr (tail) ---\n{tail(run.stderr)}"
        )


def parse_report(run: Run, what: str) -> Report:
    """The JSON load report that ``shoprec ingest --json`` prints on stdout."""
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError as exc:
        raise BenchmarkError(
            f"{what}: stdout is not a JSON report ({exc})\n{run.stdout[:2000]}"
        ) from None
    if not isinstance(report, dict):
        raise BenchmarkError(f"{what}: expected a JSON object, got {type(report).__name__}")
    return report


def expect(report: Report, **expected: int) -> list[str]:
    """Mismatches between ``report`` and the expected counts, as readable lines."""
    return [
        f"{key} is {report.get(key)!r}, expected {value:,}"
        for key, value in expected.items()
        if report.get(key) != value
    ]


@dataclass(frozen=True)
class Runner:
    """Runs ``shoprec`` commands as measured child processes in a scratch folder."""

    shoprec: Path
    tmp: Path
    timeout_s: float
    env: dict[str, str]

    def run(self, argv: Sequence[str]) -> Run:
        return run_measured([str(self.shoprec), *argv], self.tmp, self.timeout_s, self.env)

    def workspace(self, name: str) -> Path:
        """A workspace path that does not exist yet (the ingest creates it)."""
        path = self.tmp / name
        shutil.rmtree(path, ignore_errors=True)
        return path

    def ingest(self, result: CaseResult, argv: list[str], check: Check) -> None:
        """One measured ingest: run it, check its report, and add it to ``result``."""
        what = f"{result.name} run {len(result.runs) + 1}"
        print(f"  {what}: shoprec {' '.join(argv)}", flush=True)
        run = self.run([*argv, "--json"])
        require_success(run, what)
        report = parse_report(run, what)
        problems = check(report)
        if problems:
            raise BenchmarkError(f"{what}: wrong counts: " + "; ".join(problems))
        result.runs.append(run)
        result.reports.append(report)
        print(
            f"    {run.wall_s:7.2f} s wall, {run.cpu_s:7.2f} s CPU, "
            f"peak RSS {run.max_rss_bytes / MIB:8.1f} MiB",
            flush=True,
        )

    def generate(self, out: Path, events: int, events_format: str) -> tuple[Path, Run]:
        """Write a synthetic shop (not timed as ingest); return its events file and the run."""
        argv = ["generate", str(out), "--events", str(events), "--seed", str(SEED)]
        argv += ["--events-format", events_format]
        print(f"generating {events:,} events as {events_format} ...", flush=True)
        run = self.run(argv)
        require_success(run, f"generate --events-format {events_format}")
        path = out / f"events.{events_format}"
        if not path.is_file():
            raise BenchmarkError(f"generate did not write {path}")
        print(
            f"  generated in {run.wall_s:.1f} s (peak RSS {run.max_rss_bytes / MIB:.0f} MiB), "
            f"{path.stat().st_size / MIB:.0f} MiB",
            flush=True,
        )
        return path, run


# -- the cases ------------------------------------------------------------------------------------


def ingest_argv(fmt: str, source: Path, workspace: Path | str) -> list[str]:
    return ["ingest", "--format", fmt, str(source), "--workspace", str(workspace)]


def warm_page_cache(path: Path) -> None:
    """Read a file once so that every measured run finds it in the page cache."""
    with path.open("rb") as handle:
        while handle.read(16 * MIB):
            pass


def bench_uci(runner: Runner, source: Path, repeat: int) -> CaseResult:
    shown = " ".join(ingest_argv("online-retail", source, "<fresh>"))
    result = CaseResult("uci", shown, TARGET_UCI, gated=True)
    print(f"uci: {repeat} run(s)", flush=True)
    warm_page_cache(source)
    for index in range(repeat):
        workspace = runner.workspace(f"ws-uci-{index}")
        runner.ingest(
            result,
            ingest_argv("online-retail", source, workspace),
            lambda r: expect(r, rows_read=UCI_ROWS, events_already_in_lake=0),
        )
        shutil.rmtree(workspace, ignore_errors=True)
    return result


def bench_parquet(
    runner: Runner, source: Path, events: int, repeat: int, cases: Sequence[str]
) -> list[CaseResult]:
    """First ingest into a fresh workspace, then (if asked) the re-ingest into the same one."""
    first = CaseResult(
        "parquet",
        " ".join(ingest_argv("parquet", source, "<fresh>")),
        TARGET_10M,
        gated=events == TARGET_EVENTS,
    )
    again = CaseResult(
        "reingest", " ".join(ingest_argv("parquet", source, "<same>")), TARGET_10M, gated=False
    )
    print(f"parquet{' + reingest' if 'reingest' in cases else ''}: {repeat} run(s)", flush=True)
    for index in range(repeat):
        workspace = runner.workspace(f"ws-parquet-{index}")
        argv = ingest_argv("parquet", source, workspace)
        runner.ingest(
            first,
            argv,
            lambda r: expect(r, rows_read=events, events_added=events, events_already_in_lake=0),
        )
        if "reingest" in cases:
            runner.ingest(
                again,
                argv,
                lambda r: expect(
                    r, rows_read=events, events_added=0, events_already_in_lake=events
                ),
            )
        shutil.rmtree(workspace, ignore_errors=True)
    return [r for r in (first, again) if r.name in cases]


def bench_csv(runner: Runner, source: Path, events: int, repeat: int) -> CaseResult:
    shown = " ".join(ingest_argv("csv", source, "<fresh>"))
    result = CaseResult("csv", shown, TARGET_10M, gated=False)
    print(f"csv: {repeat} run(s)", flush=True)
    for index in range(repeat):
        workspace = runner.workspace(f"ws-csv-{index}")
        runner.ingest(
            result,
            ingest_argv("csv", source, workspace),
            lambda r: expect(r, rows_read=events, events_added=events, events_already_in_lake=0),
        )
        shutil.rmtree(workspace, ignore_errors=True)
    return result


# -- what is benchmarked: the working tree or a commit ------------------------------------------


def git_state() -> dict[str, Any]:
    diff = git("diff", "HEAD", "--", "src")
    return {
        "commit": git("rev-parse", "HEAD"),
        "src_modified": git("diff", "--name-only", "HEAD", "--", "src").splitlines(),
        "src_diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None,
    }


def extract_src(rev: str, into: Path) -> str:
    """Write ``src/`` of commit ``rev`` under ``into``; return the full commit id."""
    commit = git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if not commit:
        raise BenchmarkError(f"--rev {rev!r} is not a commit of {REPO_ROOT}")
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", commit, "src"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        raise BenchmarkError(f"git archive {commit} src failed: {archive.stderr.decode()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return commit


def check_import_location(env: dict[str, str], expected: Path) -> None:
    """Make sure the children import ``shoprec`` from ``expected``."""
    done = subprocess.run(
        [sys.executable, "-c", "import shoprec; print(shoprec.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    location = Path(done.stdout.strip()).resolve()
    if expected.resolve() not in location.parents:
        raise BenchmarkError(f"children import shoprec from {location}, not from {expected}")


# -- machine facts and output -------------------------------------------------------------------


def proc_field(path: str, prefix: str) -> str | None:
    """The value after ``prefix:`` on the first matching line of a /proc file."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def machine_facts() -> dict[str, Any]:
    import polars

    memory_kib = proc_field("/proc/meminfo", "MemTotal")
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": proc_field("/proc/cpuinfo", "model name") or platform.processor(),
        "memory_gib": round(int(memory_kib.split()[0]) / 1024**2, 1) if memory_kib else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "polars": polars.__version__,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "git": git_state(),
    }


def print_table(results: Sequence[CaseResult], generation: dict[str, Run]) -> None:
    header = (
        f"{'case':<9} {'runs':>4} {'median s':>9} {'min s':>7} {'max s':>7} "
        f"{'CPU s':>7} {'peak RSS MiB':>13}  {'target':<26} verdict"
    )
    print()
    print(header)
    print("-" * len(header))
    for result in results:
        walls = [r.wall_s for r in result.runs]
        target = result.target.describe() if result.target else "-"
        print(
            f"{result.name:<9} {len(walls):>4} {result.median_wall_s:>9.2f} {min(walls):>7.2f} "
            f"{max(walls):>7.2f} {result.median_cpu_s:>7.1f} "
            f"{result.peak_rss_bytes / MIB:>13.0f}  {target:<26} {result.verdict()}"
        )
    for result in results:
        runs = ", ".join(f"{r.wall_s:.2f}" for r in result.runs)
        print(f"  {result.name} wall times (s): {runs}")
    for name, run in generation.items():
        print(f"  generate ({name}, not an ingest): {run.wall_s:.1f} s")


def write_json(
    path: Path,
    args: argparse.Namespace,
    facts: dict[str, Any],
    results: Sequence[CaseResult],
    generation: dict[str, Run],
    error: str | None,
) -> None:
    payload = {
        "machine": facts,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "git_at_end": git_state(),  # the working tree may change during a run
        "arguments": {
            "events": args.events,
            "repeat": args.repeat,
            "uci_repeat": args.uci_repeat,
            "cases": list(args.cases),
            "rev": args.rev,
        },
        "generation": {name: run.summary() for name, run in generation.items()},
        "cases": {r.name: r.to_dict() for r in results},
        "error": error,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults written to {path}")


# -- main -----------------------------------------------------------------------------------------


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark shoprec ingest against the issue's targets."
    )
    parser.add_argument("--events", type=positive, default=TARGET_EVENTS, help="synthetic events")
    parser.add_argument(
        "--repeat", type=positive, default=1, help="runs of each synthetic case (default 1)"
    )
    parser.add_argument("--uci-repeat", type=positive, default=3, help="runs of uci (default 3)")
    parser.add_argument(
        "--cases",
        nargs="+",
        choices=ALL_CASES,
        default=list(ALL_CASES),
        help="which cases to run (default: all)",
    )
    parser.add_argument("--rev", default=None, help="benchmark src/ of this commit, not the tree")
    parser.add_argument("--shared-data", type=Path, default=None, help="shared data folder")
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the temp folder")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds before a child is killed"
    )
    parser.add_argument("--out", type=Path, default=None, help="write results as JSON here")
    return parser.parse_args(argv)


def shared_data_dir(option: Path | None) -> Path:
    if option is not None:
        return option
    env = os.environ.get("SHOPREC_SHARED_DATA")
    return Path(env) if env else (REPO_ROOT / ".." / "shared" / "data").resolve()


def make_runner(args: argparse.Namespace, tmp: Path, facts: dict[str, Any]) -> Runner:
    """The runner of the working tree, or of ``src/`` of ``--rev`` (recorded in ``facts``)."""
    shoprec = Path(sys.executable).parent / "shoprec"
    if not shoprec.is_file():
        raise BenchmarkError(f"no shoprec console script next to {sys.executable}")
    if args.rev is None:
        facts["benchmarked"] = "working tree"
        return Runner(shoprec, tmp, args.timeout, child_env(None))
    commit = extract_src(args.rev, tmp / "snapshot")
    source = tmp / "snapshot" / "src"
    env = child_env(source)
    check_import_location(env, source)
    facts["benchmarked"] = f"commit {commit}"
    print(f"benchmarking src/ of commit {commit}", flush=True)
    return Runner(shoprec, tmp, args.timeout, env)


def run_cases(
    args: argparse.Namespace, runner: Runner, results: list[CaseResult], generation: dict[str, Run]
) -> None:
    """Run the chosen cases, appending to ``results`` as they finish."""
    if "uci" in args.cases:
        source = shared_data_dir(args.shared_data) / UCI_RELATIVE
        if not source.is_file():
            raise BenchmarkError(f"UCI Online Retail file not found: {source}")
        results.append(bench_uci(runner, source, args.uci_repeat))
    if {"parquet", "reingest"} & set(args.cases):
        shop = runner.tmp / "shop-parquet"
        events, generation["parquet"] = runner.generate(shop, args.events, "parquet")
        results.extend(bench_parquet(runner, events, args.events, args.repeat, args.cases))
        shutil.rmtree(shop, ignore_errors=True)
    if "csv" in args.cases:
        shop = runner.tmp / "shop-csv"
        events, generation["csv"] = runner.generate(shop, args.events, "csv")
        results.append(bench_csv(runner, events, args.events, args.repeat))
        shutil.rmtree(shop, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    facts = machine_facts()
    print(
        f"Python {facts['python']}, polars {facts['polars']}, {facts['nproc']} CPU(s), "
        f"{facts['memory_gib']} GiB, load {facts['load_average_at_start']}"
    )
    results: list[CaseResult] = []
    generation: dict[str, Run] = {}
    error: str | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="shoprec-bench-", dir=args.workdir) as tmp:
            runner = make_runner(args, Path(tmp), facts)
            run_cases(args, runner, results, generation)
    except BenchmarkError as exc:
        error = str(exc)
        print(f"\nBENCHMARK FAILED: {error}", file=sys.stderr)
    measured = [r for r in results if r.runs]
    if measured:
        print_table(measured, generation)
    if args.out is not None:
        write_json(args.out, args, facts, measured, generation, error)
    if error is not None:
        return EXIT_FAILED
    if any(r.gated and r.meets_target() is False for r in measured):
        print("\nFAIL: a target was missed")
        return EXIT_MISSED_TARGET
    print("\nPASS: every check and gated target passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

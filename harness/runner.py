"""``harness run`` from a resolved run to a written report.

Whatever was measured is written, whatever happens: the report is rewritten at
each checkpoint, and the final write falls back to another path if it must.
SIGINT, SIGTERM and SIGHUP stop sending, abort what is in flight and write a
partial report; a second signal stops waiting for the in-flight requests.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import sys
from collections.abc import Iterator
from types import FrameType

import msgspec

from harness import __version__, environment
from harness.bench_loop import BenchLoop
from harness.config import Network, Run
from harness.console import Display
from harness.fleet import Fleet, Interrupted, RunError
from harness.output import Outputs
from harness.report import print_end_table
from harness.schema import SCHEMA_VERSION, BenchmarkResult, Report
from harness.timing import Timings
from protocol.transport import settle_memory

EXIT_OK = 0
EXIT_FAILED = 1  # the run could not complete (engine start-up, collector death, ...)
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # a signal: a partial report was written
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Execution:
    """One run: its fleet, its benchmarks, and the report they make."""

    def __init__(self, run: Run, fleet: Fleet, timings: Timings) -> None:
        self.run = run
        self.fleet = fleet
        self.timings = timings
        self.results: list[BenchmarkResult] = []
        self.outputs = Outputs(run.outputs, run.run_id)
        self.display = Display(run)
        self.loop = BenchLoop(run, fleet, self.display, self.checkpoint)
        self.config = msgspec.to_builtins(run.config)
        self.final: Report | None = None

    def report(self, benchmarks: list[BenchmarkResult], partial: bool, why: str | None) -> Report:
        return Report(
            schema_version=SCHEMA_VERSION,
            harness_version=__version__,
            created_utc=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            command=list(self.run.command),
            config=self.config,
            environment=environment.collect(self.fleet.worker_envs()),
            benchmarks=benchmarks,
            partial=partial,
            stop_reason=why,
            rejected_messages=dict(self.fleet.rejected),
            records=[str(p.resolve()) for p in self.run.records],
            timings=self.timings.as_dict(),
        )

    def checkpoint(self, running: BenchmarkResult) -> None:
        # A crash of anything, this process included, loses at most --checkpoint-s.
        self.outputs.write(self.report([*self.results, running], True, "running: checkpoint"))

    def benchmarks(self) -> tuple[str | None, int]:
        """Run every benchmark; (why the run stopped early, exit code)."""
        for i, plan in enumerate(self.run.plans(self.results)):
            res = self.loop.run_bench(i, plan)
            self.timings.mark(f"benchmark {i}: {plan.name}")
            self.results.append(res)
            if self.fleet.interrupted:
                return "interrupted", EXIT_INTERRUPTED
            if res.stop_reason == "max_errors":
                print(f"harness: error: {plan.name}: --max-errors reached", file=sys.stderr)
                return "max_errors", EXIT_FAILED
            if not self.fleet.live_workers():
                return "all workers died", EXIT_FAILED
        return None, EXIT_OK

    def execute(self) -> int:
        why: str | None = None
        if not self.run.quiet:
            self.outputs.notice_replaced()
        with self.display:
            try:
                with interruptible():
                    self._start()
                    why, code = self.benchmarks()
            except Interrupted:
                why, code = "interrupted", EXIT_INTERRUPTED
            except RunError as e:
                why, code = str(e), EXIT_FAILED
                _say(f"harness: error: {e}")
            except KeyboardInterrupt:
                why, code = "interrupted twice", EXIT_INTERRUPTED
        self._write_final(why, code)
        return code if not self.outputs.failed or code != EXIT_OK else EXIT_FAILED

    def _start(self) -> None:
        """Start the engines, showing each process's state while they start."""
        ok = False
        try:
            self.fleet.start(on_tick=self.display.startup)
            ok = True
        finally:
            if self.fleet.spawned_at is not None:
                self.timings.mark("spawn", self.fleet.spawned_at)
            self.timings.mark("engine start")
            self.display.started(self.fleet, ok)
            settle_memory()  # the workload's prompts stay out of every collection while pacing

    def rewrite_timings(self) -> None:
        """The JSON reports again, now that the shutdown's time is known too."""
        if self.final is not None:
            self.final.timings = self.timings.as_dict()
            self.outputs.write(self.final, final=True, only=".json")

    def _write_final(self, why: str | None, code: int) -> None:
        running = self.loop.bench
        if code != EXIT_OK and running is not None:
            cut = self.loop.snapshot_now() or running.snapshot  # what it measured before the stop
            if cut is not None:
                cut.stop_reason = why
                self.results.append(cut)
        self.final = self.report(self.results, code != EXIT_OK, why)
        self.outputs.write(self.final, final=True)


def execute(run: Run) -> int:
    """Run it, write its report and print its table, then stop the engines; the exit code.

    A launcher's refusal (``--launcher ray`` on a cluster that cannot hold the run) is a
    UsageError raised here, before anything starts.
    """
    timings = Timings()
    timings.mark("set-up (imports, options, workload)")
    launcher = None
    if run.config.launcher == "ray":
        from harness.launchers.ray import connect

        launcher = connect(run)
        run = launcher.run  # with the address the cluster's nodes reach
    try:
        fleet = Fleet(run, launcher)
    except RunError as e:
        print(f"harness: error: {e}", file=sys.stderr)
        if launcher is not None:
            launcher.close()
        return EXIT_FAILED
    if run.network is not None and launcher is None:
        try:
            _announce(run.network, fleet.server_key)
        except OSError as e:
            fleet.close()
            print(
                f"harness: error: --key-file {run.network.key_file}: {e.strerror}", file=sys.stderr
            )
            return EXIT_FAILED
    ex = Execution(run, fleet, timings)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        first = not fleet.interrupted
        fleet.interrupted = signum
        if first:
            _say(f"\nharness: {signal.Signals(signum).name}: stopping; a second one stops waiting")
        elif _INTERRUPTIBLE["on"]:
            _INTERRUPTIBLE["on"] = False  # once: a third signal, wherever it lands, is noted
            raise KeyboardInterrupt  # the second signal: stop waiting for in-flight requests

    old = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    code = EXIT_FAILED
    try:
        code = ex.execute()
        _print_end(run, ex, code)  # the answer comes before the engines stop
        timings.mark("results")
    finally:
        try:
            fleet.close()
            timings.mark("shutdown")
            ex.rewrite_timings()
        finally:
            # After a stop signal the report is written, the engines are stopped and the
            # process is about to exit with 130: a further Ctrl-C or hang-up (a key held
            # down) is ignored, or Python's default handler, which its exit restores for
            # any handler of ours, would end it by the signal. SIGTERM still ends it.
            for s, h in old.items():
                ignore = fleet.interrupted and s != signal.SIGTERM
                signal.signal(s, signal.SIG_IGN if ignore else h)
    return code


def _announce(net: Network, server_key: str) -> None:
    """How workers join: the command on stderr, and the key in ``--key-file`` for scripts."""
    from harness.remote import join_command

    if net.key_file is not None:
        tmp = net.key_file.with_name(f".{net.key_file.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(server_key + "\n")
        os.replace(tmp, net.key_file)  # whole or absent: a script polls for it
    _say(f"harness: waiting for {net.remote_workers} remote worker(s) on {net.listen}; on each "
         f"node run: {join_command(net, server_key)}")  # fmt: skip


_INTERRUPTIBLE = {"on": False}


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Only here does a second stop signal raise (to stop waiting for in-flight requests);
    anywhere else it is only noted, so the final write and the shutdown always finish
    (neither can hang: every wait in them has a timeout), whenever the signal lands."""
    _INTERRUPTIBLE["on"] = True
    try:
        yield
    finally:
        _INTERRUPTIBLE["on"] = False


def _say(text: str) -> None:
    """A line on stderr that never ends the run (stderr may be closed or a broken pipe)."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _print_end(run: Run, ex: Execution, code: int) -> None:
    """One table of every benchmark (``harness report`` prints each one's details), then the paths."""
    try:
        if not run.quiet and ex.results:
            from rich.console import Console

            out = Console(highlight=False)
            print_end_table(ex.report(ex.results, False, None), out)
            if code != EXIT_OK:
                out.print("PARTIAL: the run stopped early; the report says why.")
        for path in run.outputs:
            alt = ex.outputs.failed.get(path, path) if path in ex.outputs.failed else path
            if alt is not None:
                print(f"report: {alt}", file=sys.stderr)
        for path in run.records:
            print(f"requests: {path}", file=sys.stderr)
    except (OSError, ValueError):
        pass  # a closed stdout or stderr never costs the report, which is written already

"""``harness worker``: one engine on this node, joined to a head over TCP.

The engine runs in a child (``workers.main``) in a session of its own, so that
whatever vLLM starts can be stopped together, however this process ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import msgspec
import psutil

from harness.config import Network
from harness.launchers import adopt_orphans, die_with_parent
from harness.resolve import WorkerRun
from protocol.messages import WorkerConfig
from protocol.transport import split_tcp

EXIT_INTERRUPTED = 130


def join_command(net: Network, server_key: str) -> str:
    """What to run on each node so that it joins this head (a secret token stays in the
    environment unless the head made it up, when it is printed once)."""
    host, port = split_tcp(net.listen)
    if host in ("*", "0.0.0.0", "[::]"):
        host = socket.gethostname()  # bound to every interface: name this host
    token = net.token if net.token_generated else "$HARNESS_TOKEN"
    return (
        f"harness worker --connect tcp://{host}:{port} --server-key '{server_key}' --token {token}"
    )


def supervise(w: WorkerRun) -> int:
    """Run the worker child until it ends; its exit code (130 if we were stopped).

    vLLM's processes stop with it however it ends. This process adopts any that vLLM
    leaves orphaned (a child subreaper) and kills what is left at the end. Started by
    hand, the child gets a session of its own, away from the terminal's Ctrl-C (this
    process handles it). Started by a launcher (Ray), everything stays in this process's
    group, which the launcher kills even when it kills this process outright.
    """
    cfg = WorkerConfig(
        worker_id=-1,
        coordinator_addr=w.connect,
        collector_addr="",
        token=w.token,
        engine="",
        remote=True,
        join_timeout_s=w.join_timeout_s,
        clock_skew_ns=w.clock_skew_ns,
        model=w.model,
        server_key=w.server_key,
    )
    own_session = not os.environ.get("HARNESS_LAUNCHER")
    adopt_orphans()
    # The config (the token) goes through a pipe: never on a command line, never on disk.
    cmd = [sys.executable, "-m", "workers.main", "harness-worker-remote", "-"]
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **w.env},
        stdin=subprocess.PIPE,
        start_new_session=own_session,
        preexec_fn=die_with_parent,  # a supervisor killed outright leaves no engine behind
    )
    assert proc.stdin is not None
    proc.stdin.write(msgspec.json.encode(cfg))
    proc.stdin.close()

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    code = EXIT_INTERRUPTED
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            pass
    finally:
        _stop_all(proc, own_session)
    return code


def _stop_all(proc: subprocess.Popen[bytes], own_session: bool) -> None:
    """The child and every process it left (vLLM's engine core and workers), killed."""
    if own_session:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    else:
        proc.kill()
    proc.wait()
    left = psutil.Process().children(recursive=True)  # orphans this subreaper adopted
    for p in left:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(left, timeout=5)

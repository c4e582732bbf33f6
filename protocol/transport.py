"""Socket set-up shared by every process: one place for options, addresses and security.

Queues are bounded: a peer that falls behind slows its senders (a PUSH blocks at its
high-water mark) instead of growing the receiver's memory. Every TCP socket is
encrypted and authenticated with ZeroMQ CURVE; ipc sockets live in a 0700 folder.
"""

from __future__ import annotations

import os
import tempfile

import zmq

# Messages a socket queues each way before its sender waits. Events messages carry one
# engine step each, so this is seconds of a worker's output, not hours.
HWM = 1000
# The largest frame a socket takes from its peers: garbage cannot allocate past it.
MAX_FRAME = 64 << 20
KEY_LEN = 40  # a CURVE key, z85-encoded


def private_ipc_dir() -> str:
    """A 0700 folder for ipc:// socket files and child configs, so other users cannot reach them."""
    return tempfile.mkdtemp(prefix="harness-")


def ipc_address(folder: str, name: str) -> str:
    return f"ipc://{os.path.join(folder, name)}"


def split_tcp(addr: str) -> tuple[str, int]:
    """``tcp://HOST:PORT`` as (HOST, PORT); ValueError if it is not one."""
    host, sep, port = addr.removeprefix("tcp://").rpartition(":")
    if not addr.startswith("tcp://") or not sep or not host or not port.isdigit():
        raise ValueError(f"expected tcp://HOST:PORT, got {addr!r}")
    return host, int(port)


def make_socket(
    ctx: zmq.Context, kind: int, *, identity: bytes | None = None, max_frame: int = MAX_FRAME
) -> zmq.Socket:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, HWM)
    sock.setsockopt(zmq.RCVHWM, HWM)
    sock.setsockopt(zmq.MAXMSGSIZE, max_frame)
    sock.setsockopt(zmq.IPV6, 1)  # tcp:// (multi-node) may name IPv6 hosts; IPv4 still works
    if identity is not None:
        sock.setsockopt(zmq.ROUTING_ID, identity)
    return sock


# --- CURVE ---------------------------------------------------------------------


def curve_keypair() -> tuple[str, str]:
    """(public, secret), z85 text: fresh for every run and every remote worker."""
    public, secret = zmq.curve_keypair()
    return public.decode(), secret.decode()


def is_curve_key(text: str) -> bool:
    if len(text) != KEY_LEN:
        return False
    from zmq.utils import z85

    try:
        return len(z85.decode(text.encode())) == 32
    except (ValueError, KeyError, TypeError, IndexError):
        return False


def curve_server(sock: zmq.Socket, secret: str) -> None:
    """Encrypt this bound socket; clients must know its public key (ZAP decides who may join)."""
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_SECRETKEY, secret.encode())


def curve_client(sock: zmq.Socket, server_public: str, keys: tuple[str, str]) -> None:
    """Connect encrypted to the server with ``server_public``, as ``keys`` (public, secret)."""
    sock.setsockopt(zmq.CURVE_SERVERKEY, server_public.encode())
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys[0].encode())
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys[1].encode())


def peer_key(frame: zmq.Frame) -> str | None:
    """The CURVE public key the authenticator admitted for the connection ``frame`` came on."""
    try:
        return frame.get("User-Id")
    except (zmq.ZMQError, UnicodeDecodeError):
        return None


class KeyGate:
    """The keys a CURVE server admits, for ``zmq.auth``'s callback; set from the main thread."""

    def __init__(self) -> None:
        self.allowed: dict[str, int] = {}  # key -> worker id

    def callback(self, domain: str, key: bytes) -> bool:
        return key.decode() in self.allowed


def start_authenticator(ctx: zmq.Context, gate: KeyGate | None) -> object:
    """ZAP for ``ctx``'s CURVE servers: any client key (``gate`` None), or the gate's keys."""
    from zmq.auth.thread import ThreadAuthenticator

    auth = ThreadAuthenticator(ctx)
    auth.start()
    if gate is None:
        auth.configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)
    else:
        auth.configure_curve_callback(domain="*", credentials_provider=gate)
    return auth


def settle_memory() -> None:
    """After set-up: move every object alive now out of the garbage collector's sight.

    A process that paces or timestamps holds many long-lived containers (the workload's
    prompts, an engine's modules); a full collection would walk them all, a pause of
    milliseconds at a moment that matters. gc.freeze() leaves them to reference counting.
    """
    import gc

    gc.collect()
    gc.freeze()

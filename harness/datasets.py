"""Workloads from files: JSONL prompts, ShareGPT conversations and timestamped traces.

Everything is tokenized here, before the clock starts; workers only ever see
token ids. Errors name the file, the line and the field, in one line.

- JSONL: one object a line with ``prompt`` (text), ``prompt_token_ids`` or
  ``messages`` (chat: a list of ``{"role", "content"}``), and optionally
  ``output_tokens``.
- ShareGPT (a JSON list of ``{"conversations": [{"from", "value"}, ...]}``): the
  first human turn is the prompt, and the first reply's token count the output
  length (as ``vllm bench serve`` does).
- Trace (Mooncake-style JSONL): ``timestamp`` (ms), ``input_length``,
  ``output_length`` and optional ``hash_ids``, one per block of
  ``TRACE_BLOCK_TOKENS`` tokens: equal ids are equal token blocks, so shared
  prefixes hit the prefix cache as they did in production.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness.workload import Sample, Workload, WorkloadError

TRACE_BLOCK_TOKENS = 512
DEFAULT_OUTPUT_TOKENS = 256  # when a file line gives none, as vllm bench's custom dataset

Tokenize = Callable[[str], list[int]]
Template = Callable[[list[dict[str, str]]], str]


def _fail(path: Path, line: int | None, msg: str) -> WorkloadError:
    where = f"{path}:{line}" if line is not None else str(path)
    return WorkloadError(f"{where}: {msg}")


def _read_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise _fail(path, None, "no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise _fail(path, None, f"cannot read ({e})") from None
    out = []
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise _fail(path, no, f"bad JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise _fail(path, no, "expected a JSON object")
        out.append((no, obj))
    if not out:
        raise _fail(path, None, "no requests in the file")
    return out


def _length(path: Path, no: int, obj: dict[str, Any], key: str, default: int | None) -> int:
    v = obj.get(key, default)
    if v is None:
        raise _fail(path, no, f"missing field {key!r}")
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise _fail(path, no, f"field {key!r} must be a positive integer, got {v!r}")
    return v


def is_trace(path: Path) -> bool:
    lines = _read_lines(path)
    return "timestamp" in lines[0][1]


def load_jsonl(
    path: Path, tokenize: Tokenize | None, template: Template | None, vocab: int
) -> Workload:
    samples = []
    for no, obj in _read_lines(path):
        out = _length(path, no, obj, "output_tokens", DEFAULT_OUTPUT_TOKENS)
        if "prompt_token_ids" in obj:
            ids = obj["prompt_token_ids"]
            if not isinstance(ids, list) or not ids or not all(isinstance(t, int) for t in ids):
                raise _fail(
                    path, no, "field 'prompt_token_ids' must be a non-empty list of integers"
                )
            bad = [t for t in ids if not 0 <= t < vocab]
            if bad:
                raise _fail(
                    path,
                    no,
                    f"field 'prompt_token_ids': token id {bad[0]} is outside the vocabulary [0, {vocab})",
                )
        elif "prompt" in obj or "messages" in obj:
            if tokenize is None:
                raise _fail(
                    path,
                    no,
                    "text prompts need a tokenizer (--tokenizer, or a model directory with one)",
                )
            if "messages" in obj:
                msgs = obj["messages"]
                if not isinstance(msgs, list) or not all(
                    isinstance(m, dict) and isinstance(m.get("content"), str) for m in msgs
                ):
                    raise _fail(
                        path, no, "field 'messages' must be a list of {role, content} objects"
                    )
                assert template is not None
                text = template(msgs)
            else:
                text = obj["prompt"]
                if not isinstance(text, str) or not text:
                    raise _fail(path, no, "field 'prompt' must be a non-empty string")
            ids = tokenize(text)
        else:
            raise _fail(path, no, "needs one of 'prompt', 'prompt_token_ids' or 'messages'")
        samples.append(Sample(list(ids), out, f"{path}:{no}"))
    return Workload(source=str(path), samples=samples)


def load_sharegpt(path: Path, tokenize: Tokenize | None, template: Template | None) -> Workload:
    if tokenize is None:
        raise _fail(
            path,
            None,
            "ShareGPT text needs a tokenizer (--tokenizer, or a model directory with one)",
        )
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise _fail(path, None, "no such file") from None
    except json.JSONDecodeError as e:
        raise _fail(path, e.lineno, f"bad JSON ({e.msg})") from None
    if not isinstance(data, list):
        raise _fail(path, None, "expected a JSON list of conversations")
    samples = []
    for i, conv in enumerate(data):
        turns = conv.get("conversations") if isinstance(conv, dict) else None
        if not isinstance(turns, list) or len(turns) < 2:
            continue  # like vllm bench: conversations without a reply are skipped
        first, reply = turns[0], turns[1]
        if not all(isinstance(t, dict) and isinstance(t.get("value"), str) for t in (first, reply)):
            raise _fail(path, None, f"conversation {i}: turns need a string 'value'")
        text = first["value"]
        if template is not None:
            text = template([{"role": "user", "content": text}])
        ids = tokenize(text)
        out = max(len(tokenize(reply["value"])), 1)
        if ids:
            samples.append(Sample(ids, out, f"{path}#{i}"))
    if not samples:
        raise _fail(path, None, "no usable conversations")
    return Workload(source=str(path), samples=samples)


def load_trace(path: Path, vocab: int, seed: int) -> tuple[Workload, np.ndarray]:
    """Samples in trace order and their send offsets (ns from the first)."""
    samples, stamps = [], []
    blocks: dict[int, list[int]] = {}
    for no, obj in _read_lines(path):
        ts = obj.get("timestamp")
        if not isinstance(ts, (int, float)) or isinstance(ts, bool) or ts < 0:
            raise _fail(
                path, no, f"field 'timestamp' must be a non-negative number (ms), got {ts!r}"
            )
        n_in = _length(path, no, obj, "input_length", None)
        n_out = _length(path, no, obj, "output_length", None)
        hashes = obj.get("hash_ids") or []
        if not isinstance(hashes, list) or not all(isinstance(h, int) for h in hashes):
            raise _fail(path, no, "field 'hash_ids' must be a list of integers")
        ids: list[int] = []
        for h in hashes:
            if h not in blocks:
                rng = np.random.default_rng([seed, 0xB10C, h & 0xFFFFFFFF])
                blocks[h] = rng.integers(0, vocab, TRACE_BLOCK_TOKENS).tolist()
            ids.extend(blocks[h])
        if len(ids) < n_in:  # the part past the shared blocks is this request's own
            rng = np.random.default_rng([seed, 0x7EA, no])
            ids.extend(rng.integers(0, vocab, n_in - len(ids)).tolist())
        samples.append(Sample(ids[:n_in], n_out, f"{path}:{no}"))
        stamps.append(float(ts))
    t = np.array(stamps)
    if np.any(np.diff(t) < 0):
        order = np.argsort(t, kind="stable")
        samples = [samples[i] for i in order]
        t = t[order]
    offsets = np.round((t - t[0]) * 1e6).astype(np.int64)
    return Workload(source=str(path), samples=samples), offsets


def mix(workloads: list[Workload], weights: list[float], n: int, seed: int) -> Workload:
    """``n`` samples drawn from the sources in proportion to ``weights`` (seeded)."""
    if len(workloads) == 1:
        return workloads[0]
    p = np.array(weights, dtype=np.float64)
    p = p / p.sum()
    rng = np.random.default_rng([seed, 0x313])
    picks = rng.choice(len(workloads), size=n, p=p)
    cursors = [0] * len(workloads)
    out = []
    for k in picks.tolist():
        src = workloads[k].samples
        out.append(src[cursors[k] % len(src)])
        cursors[k] += 1
    return Workload(source=" + ".join(w.source for w in workloads), samples=out)


def load_tokenizer(path: Path) -> tuple[Tokenize, Any]:
    """A Hugging Face tokenizer from a directory; ValueError with one line if there is none."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ValueError(
            "text workloads need the transformers package (installed with vllm)"
        ) from None
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: no usable tokenizer ({first})") from None

    def tokenize(text: str) -> list[int]:
        return list(tok.encode(text, add_special_tokens=False))

    return tokenize, tok


def chat_template(kind: str, tokenizer: Any) -> Template:
    """``default`` (the tokenizer's own), ``plain`` (contents joined by a space) or a jinja file."""
    if kind == "plain":
        return lambda msgs: " ".join(m["content"] for m in msgs)
    if kind == "default":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError("--chat-template default: the tokenizer has no chat template")
        return lambda msgs: tokenizer.apply_chat_template(
            msgs, tokenize=False, add_generation_prompt=True
        )
    path = Path(kind)
    try:
        source = path.read_text()
    except OSError as e:
        raise ValueError(f"--chat-template {kind}: {e.strerror or e}") from None
    import jinja2

    try:
        tmpl = jinja2.Environment().from_string(source)
    except jinja2.TemplateError as e:
        raise ValueError(f"--chat-template {kind}: {e}") from None
    return lambda msgs: tmpl.render(messages=msgs, add_generation_prompt=True)


def is_file(item: str) -> bool:
    """A ``--data`` item names a file (rather than a synthetic spec)."""
    return item.endswith((".json", ".jsonl")) or Path(item).is_file()


class Sources:
    """The ``--data`` items, loaded and tokenized; ``replay_ns`` holds a trace's send offsets."""

    def __init__(self, workloads: list[Workload], replay_ns: np.ndarray | None, texts: set[str]):
        self.workloads = workloads
        self.replay_ns = replay_ns
        self.texts = texts  # "text" and/or "chat": what needed a tokenizer or a template

    @property
    def entries(self) -> int:
        return sum(len(w.samples) for w in self.workloads)


def load_sources(
    items: list[str],
    tokenizer_dir: Path | None,
    template_kind: str,
    vocab: int,
    seed: int,
    n_synthetic: int,
) -> Sources:
    """Every ``--data`` item: synthetic specs get ``n_synthetic`` samples (or their ``samples=``)."""
    from harness.workload import parse_spec, synthetic

    tok: tuple[Tokenize, Any] | None = None
    texts: set[str] = set()

    def tokenizer(chat: bool = True) -> tuple[Tokenize | None, Template | None]:
        nonlocal tok
        if tokenizer_dir is None:
            return None, None
        if tok is None:
            try:
                tok = load_tokenizer(tokenizer_dir)
            except ValueError as e:
                raise WorkloadError(str(e)) from None
        if not chat:
            return tok[0], None
        try:
            return tok[0], chat_template(template_kind, tok[1])
        except ValueError as e:
            raise WorkloadError(str(e)) from None

    sources: list[Workload] = []
    offsets = None
    for item in items:
        if not is_file(item):
            sources.append(synthetic(parse_spec(item), n_synthetic, vocab, seed))
            continue
        path = Path(item)
        if path.suffix == ".json":
            texts.add("chat")
            sources.append(load_sharegpt(path, *_need(tokenizer, path)))
        elif is_trace(path):
            if len(items) > 1:
                raise WorkloadError(
                    f"{path}: a trace is replayed alone, not mixed with other --data"
                )
            wl, offsets = load_trace(path, vocab, seed)
            sources.append(wl)
        else:
            kinds = jsonl_kinds(path)
            texts |= kinds
            tz, tmpl = tokenizer("chat" in kinds) if kinds else (None, None)
            sources.append(load_jsonl(path, tz, tmpl, vocab))
    return Sources(sources, offsets, texts)


def jsonl_kinds(path: Path) -> set[str]:
    """What a JSONL file's lines hold that needs a tokenizer: "text" prompts, "chat" messages."""
    kinds = set()
    for _, obj in _read_lines(path):
        if "prompt_token_ids" in obj:
            continue
        if "messages" in obj:
            kinds.add("chat")
        if "prompt" in obj:
            kinds.add("text")
    return kinds


def combine(sources: Sources, weights: list[float], n: int, seed: int) -> Workload:
    """One workload: a single source as it is; several drawn by ``weights``, or all once in order."""
    wls = sources.workloads
    if len(wls) == 1:
        return wls[0]
    if not weights:
        out = [s for w in wls for s in w.samples]
        return Workload(source=" + ".join(w.source for w in wls), samples=out)
    return mix(wls, weights, n, seed)


def _need(
    tokenizer: Callable[[], tuple[Tokenize | None, Template | None]], path: Path
) -> tuple[Tokenize | None, Template | None]:
    tz, tmpl = tokenizer()
    if tz is None:
        raise _fail(
            path, None, "text needs a tokenizer (--tokenizer, or a model directory with one)"
        )
    return tz, tmpl

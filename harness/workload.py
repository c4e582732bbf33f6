"""Requests, fully built before the clock starts: prompt token ids and output lengths.

A synthetic spec is ``prompt_tokens=256,output_tokens=128`` plus optional
``*_stdev``, ``*_min``, ``*_max`` for either length, ``prefix_tokens=N`` (one
prefix shared by every prompt, in front of its ``prompt_tokens``) and
``samples=N`` (distinct prompts, reused round-robin).
"""

from __future__ import annotations

import msgspec
import numpy as np


class WorkloadError(ValueError):
    """Bad workload input; the message is one line for the user."""


class SyntheticSpec(msgspec.Struct, forbid_unknown_fields=True):
    prompt_tokens: int = 128
    output_tokens: int = 64
    prompt_tokens_stdev: float = 0.0
    prompt_tokens_min: int | None = None
    prompt_tokens_max: int | None = None
    output_tokens_stdev: float = 0.0
    output_tokens_min: int | None = None
    output_tokens_max: int | None = None
    prefix_tokens: int = 0
    samples: int | None = None


class Sample(msgspec.Struct, array_like=True, gc=False):
    prompt: list[int]
    output_tokens: int
    origin: str = ""  # file:line, for errors


class Workload(msgspec.Struct):
    source: str
    samples: list[Sample]

    def summary(self) -> dict[str, object]:
        """What was actually sent: the source and its length distributions."""
        from harness.stats import dist

        p = np.array([len(s.prompt) for s in self.samples])
        o = np.array([s.output_tokens for s in self.samples])
        return {
            "source": self.source,
            "samples": len(self.samples),
            "prompt_tokens": msgspec.to_builtins(dist(p, 1)),
            "output_tokens": msgspec.to_builtins(dist(o, 1)),
        }


def parse_spec(text: str) -> SyntheticSpec:
    fields: dict[str, object] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise WorkloadError(f"--data {text!r}: expected key=value, got {part!r}")
        key = key.strip()
        if key not in SyntheticSpec.__struct_fields__:
            known = ", ".join(SyntheticSpec.__struct_fields__)
            raise WorkloadError(f"--data: unknown key {key!r} (known: {known})")
        try:
            fields[key] = float(value) if key.endswith("_stdev") else int(value)
        except ValueError:
            raise WorkloadError(f"--data: {key}={value!r} is not a number") from None
    spec = msgspec.convert(fields, SyntheticSpec)
    for key in SyntheticSpec.__struct_fields__:
        v = getattr(spec, key)
        if v is not None and v < 0:
            raise WorkloadError(f"--data: {key} must not be negative (got {v})")
    if spec.prompt_tokens < 1 or spec.output_tokens < 1:
        raise WorkloadError("--data: prompt_tokens and output_tokens must be at least 1")
    return spec


def _lengths(
    rng: np.random.Generator, n: int, mean: int, stdev: float, lo: int | None, hi: int | None
) -> np.ndarray:
    vals = rng.normal(mean, stdev, n) if stdev > 0 else np.full(n, float(mean))
    vals = np.clip(np.round(vals), max(lo or 1, 1), hi if hi is not None else np.inf)
    return vals.astype(np.int64)


def synthetic(spec: SyntheticSpec, n: int, vocab_size: int, seed: int) -> Workload:
    """``n`` samples (or ``spec.samples``) of seeded random token ids in ``[0, vocab_size)``."""
    count = spec.samples or n
    rng = np.random.default_rng([seed, 0x5EED])
    p_len = _lengths(
        rng,
        count,
        spec.prompt_tokens,
        spec.prompt_tokens_stdev,
        spec.prompt_tokens_min,
        spec.prompt_tokens_max,
    )
    o_len = _lengths(
        rng,
        count,
        spec.output_tokens,
        spec.output_tokens_stdev,
        spec.output_tokens_min,
        spec.output_tokens_max,
    )
    prefix = rng.integers(0, vocab_size, spec.prefix_tokens).tolist()
    samples = [
        Sample(prefix + rng.integers(0, vocab_size, int(pl)).tolist(), int(ol))
        for pl, ol in zip(p_len, o_len, strict=False)
    ]
    return Workload(source="synthetic", samples=samples)


def check_fits(workload: Workload, max_model_len: int | None, vocab_size: int) -> None:
    for i, s in enumerate(workload.samples):
        if max_model_len is not None and len(s.prompt) + s.output_tokens > max_model_len:
            where = s.origin or f"{workload.source}: sample {i}"
            raise WorkloadError(
                f"{where}: {len(s.prompt)} prompt + {s.output_tokens} "
                f"output tokens exceed max_model_len {max_model_len}"
            )
        if s.prompt and (max(s.prompt) >= vocab_size or min(s.prompt) < 0):
            where = s.origin or f"{workload.source}: sample {i}"
            raise WorkloadError(f"{where}: token id outside the vocabulary [0, {vocab_size})")

"""Workloads: synthetic distributions, files, traces, mixing, tokenizers and their errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from harness.datasets import load_jsonl, load_sources, load_trace, mix
from harness.workload import WorkloadError, parse_spec, synthetic

SIM = ["--engine", "sim"]


def test_synthetic_lengths_follow_mean_stdev_and_bounds():
    spec = parse_spec(
        "prompt_tokens=200,prompt_tokens_stdev=40,prompt_tokens_min=150,prompt_tokens_max=260,"
        "output_tokens=50,output_tokens_stdev=10,samples=4000"
    )
    wl = synthetic(spec, 100, 32000, seed=3)
    p = np.array([len(s.prompt) for s in wl.samples])
    o = np.array([s.output_tokens for s in wl.samples])
    assert len(wl.samples) == 4000  # samples= wins over the request count
    assert p.min() >= 150 and p.max() <= 260
    assert p.min() == 150 and p.max() == 260  # the bounds clip, so both are reached
    assert o.mean() == pytest.approx(50, abs=0.6) and o.std() == pytest.approx(10, rel=0.05)
    assert all(0 <= t < 32000 for s in wl.samples[:50] for t in s.prompt)


def test_prefix_is_shared_exactly():
    wl = synthetic(parse_spec("prompt_tokens=20,output_tokens=4,prefix_tokens=16"), 50, 1000, 1)
    prefixes = {tuple(s.prompt[:16]) for s in wl.samples}
    assert len(prefixes) == 1
    assert all(len(s.prompt) == 36 for s in wl.samples)
    assert len({tuple(s.prompt[16:]) for s in wl.samples}) == 50


def write(tmp_path: Path, name: str, lines: list[object]) -> Path:
    p = tmp_path / name
    p.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return p


def test_jsonl_token_ids(tmp_path):
    p = write(
        tmp_path,
        "d.jsonl",
        [{"prompt_token_ids": [1, 2, 3], "output_tokens": 5}, {"prompt_token_ids": [7]}],
    )
    wl = load_jsonl(p, None, None, 100)
    assert [(s.prompt, s.output_tokens) for s in wl.samples] == [([1, 2, 3], 5), ([7], 256)]


@pytest.mark.parametrize(
    "line,message",
    [
        ("{not json", "d.jsonl:2: bad JSON"),
        (
            json.dumps({"prompt_token_ids": [1, 999]}),
            "d.jsonl:2: field 'prompt_token_ids': token id 999 is outside the vocabulary [0, 100)",
        ),
        (
            json.dumps({"prompt_token_ids": [1], "output_tokens": -3}),
            "d.jsonl:2: field 'output_tokens' must be a positive integer, got -3",
        ),
        (
            json.dumps({"text": "x"}),
            "d.jsonl:2: needs one of 'prompt', 'prompt_token_ids' or 'messages'",
        ),
        (json.dumps({"prompt": "hello"}), "d.jsonl:2: text prompts need a tokenizer"),
        (json.dumps([1, 2]), "d.jsonl:2: expected a JSON object"),
    ],
)
def test_bad_jsonl_lines_name_file_line_and_field(tmp_path, line, message):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"prompt_token_ids": [1]}) + "\n" + line + "\n")
    with pytest.raises(WorkloadError) as e:
        load_jsonl(p, None, None, 100)
    assert str(e.value).startswith(str(tmp_path / message.split(":")[0]))
    assert message in str(e.value)


def test_trace_parses_offsets_lengths_and_shared_blocks(tmp_path):
    p = write(tmp_path, "t.jsonl", [
        {"timestamp": 0, "input_length": 600, "output_length": 10, "hash_ids": [7, 8]},
        {"timestamp": 250, "input_length": 520, "output_length": 20, "hash_ids": [7, 9]},
        {"timestamp": 1000, "input_length": 30, "output_length": 5},
    ])  # fmt: skip
    wl, off = load_trace(p, 1000, seed=1)
    assert off.tolist() == [0, 250_000_000, 1_000_000_000]
    assert [len(s.prompt) for s in wl.samples] == [600, 520, 30]
    assert [s.output_tokens for s in wl.samples] == [10, 20, 5]
    # Block 7 is the same 512 tokens in both requests; what follows differs.
    assert wl.samples[0].prompt[:512] == wl.samples[1].prompt[:512]
    assert wl.samples[0].prompt[512:520] != wl.samples[1].prompt[512:520]


def test_bad_trace_line(tmp_path):
    p = write(tmp_path, "t.jsonl", [{"timestamp": 0, "input_length": 5, "output_length": 1},
                                    {"timestamp": "soon", "input_length": 5, "output_length": 1}])  # fmt: skip
    with pytest.raises(
        WorkloadError, match=r"t.jsonl:2: field 'timestamp' must be a non-negative number"
    ):
        load_trace(p, 100, 0)


def test_missing_file_and_mixing(tmp_path):
    with pytest.raises(WorkloadError, match="nope.jsonl: no such file"):
        load_sources([str(tmp_path / "nope.jsonl")], None, "default", 100, 0, 10)
    a = synthetic(parse_spec("prompt_tokens=4,output_tokens=1"), 10, 100, 0)
    b = synthetic(parse_spec("prompt_tokens=9,output_tokens=2"), 10, 100, 0)
    mixed = mix([a, b], [3.0, 1.0], 4000, seed=0)
    share = np.mean([len(s.prompt) == 4 for s in mixed.samples])
    assert share == pytest.approx(0.75, abs=0.03)


def test_replay_sends_at_the_recorded_offsets(harness, tmp_path):
    trace = write(tmp_path, "trace.jsonl", [
        {"timestamp": t, "input_length": 16, "output_length": 4} for t in (0, 100, 200, 700, 800)
    ])  # fmt: skip
    _, rep = harness(engine="sim", profile="replay", data=str(trace), time_scale="0.5")
    b = rep["benchmarks"][0]
    assert b["requests"]["completed"] == 5 and b["load"]["profile"] == "replay"
    # 800 ms at half speed: the sends span 400 ms, so 4 gaps over 0.4 s.
    assert b["load"]["achieved_send_rate"] == pytest.approx(4 / 0.4, rel=0.05)
    assert rep["config"]["workload"]["samples"] == 5


def test_mixed_sources_in_a_run(harness, tmp_path):
    ids = write(tmp_path, "ids.jsonl", [{"prompt_token_ids": [5] * 40, "output_tokens": 3}])
    _, rep = harness(engine='sim', max_requests='200', data=['prompt_tokens=10,output_tokens=2', str(ids)], data_weights='1,1')  # fmt: skip
    wl = rep["config"]["workload"]["summary"]
    assert wl["prompt_tokens"]["min"] == 10 and wl["prompt_tokens"]["max"] == 40
    b = rep["benchmarks"][0]
    assert b["requests"]["completed"] == 200
    assert b["prompt_tokens"]["min"] == 10 and b["prompt_tokens"]["max"] == 40


needs_tokenizers = pytest.mark.skipif(
    importlib.util.find_spec("tokenizers") is None
    or importlib.util.find_spec("transformers") is None,
    reason="tokenizers/transformers are installed with vllm",
)


@needs_tokenizers
def test_tiny_model_tokenizer_text_and_chat(harness, tmp_path):
    from harness.datasets import chat_template, load_tokenizer
    from harness.tinymodel import write_tiny_model

    model = write_tiny_model(tmp_path / "m", tokenizer=True)
    tokenize, tok = load_tokenizer(model)
    assert 1000 < len(tok) <= 4096
    text = "What is the throughput of this engine? Please explain."
    ids = tokenize(text)
    assert ids and all(0 <= t < 4096 for t in ids)
    default = chat_template("default", tok)([{"role": "user", "content": "hi"}])
    assert default == "<|user|>\nhi</s>\n<|assistant|>\n"
    assert (
        chat_template("plain", tok)(
            [{"role": "system", "content": "a"}, {"role": "user", "content": "b"}]
        )
        == "a b"
    )
    data = write(tmp_path, "text.jsonl", [
        {"prompt": text, "output_tokens": 3},
        {"messages": [{"role": "user", "content": "hello there"}], "output_tokens": 2},
    ])  # fmt: skip
    _, rep = harness(engine="sim", tokenizer=str(model), data=str(data), max_requests="2")
    b = rep["benchmarks"][0]
    chat_ids = tokenize(default.replace("hi", "hello there"))
    assert sorted([b["prompt_tokens"]["min"], b["prompt_tokens"]["max"]]) == sorted(
        [len(ids), len(chat_ids)]
    )


def test_text_without_tokenizer_is_a_usage_error(harness, tmp_path):
    data = write(tmp_path, "text.jsonl", [{"prompt": "hello"}])
    proc, _ = harness(engine="sim", data=str(data), check=False)
    assert proc.returncode == 2
    assert "text.jsonl:1: text prompts need a tokenizer" in proc.stderr

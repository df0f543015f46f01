"""Text from a trained language model: contexts from text, and sampling one token at a time.

A context is always block_size tokens, the length the network was trained on: in `lines`
mode an item starts after block_size boundary tokens (as in training), so a prompt is
preceded by them; in `stream` mode a prompt shorter than block_size is preceded by the
start of the training text (kept in the checkpoint). Each step runs the network on the
last block_size tokens, takes softmax(logits / temperature) of the last position (target
sequence) or of the only output (target next), and draws the next token with
torch.multinomial from a seeded generator, as makemore and nanoGPT's sample.py do.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from minidl_cli.config.validate import SEED_LIMIT
from minidl_cli.data.text import encode

DEFAULT_NUM = {"lines": 10, "stream": 1}  # items of a lines run; texts of a stream run
DEFAULT_MAX_TOKENS = {"lines": 100, "stream": 500}  # an item's cap; a stream text's length


def contexts(task: Any, texts: list[str], wheres: list[str] | None = None) -> Tensor:
    """The network's input for each text: its last block_size tokens after the padding the
    mode calls for (see the module docstring).

    Shape: -> (len(texts), block_size) int64. Raises ValueError naming a character that is
    not in the vocabulary, and the vocabulary; `wheres` (one per text, e.g. "ctx.txt line 3")
    says where the text came from.
    """
    pad = (task.boundary * task.block_size if task.mode == "lines" else task.start) or ""
    rows = []
    for i, text in enumerate(texts):
        what = f"{wheres[i]}: the text {text!r}" if wheres else f"the text {text!r}"
        ids = encode(pad + text, task.vocabulary, what)
        if len(ids) < task.block_size:  # a stream run without a recorded start
            raise ValueError(f"{what} is shorter than the run's context of "
                             f"{task.block_size} characters; give a longer one")
        rows.append(ids[-task.block_size:])
    return torch.stack(rows) if rows else torch.zeros(0, task.block_size, dtype=torch.int64)


def generate(model: Any, task: Any, num: int | None = None, max_tokens: int | None = None,
             temperature: float = 1.0, prompt: str = "", seed: int | None = None) -> list[str]:
    """`num` texts sampled from `model` (in eval mode), each starting with `prompt`.

    Lines runs: each text is one item, ending where the model draws the boundary token (not
    included) or after `max_tokens` tokens; stream runs: `max_tokens` tokens after the
    prompt. Defaults: DEFAULT_NUM and DEFAULT_MAX_TOKENS of the run's mode. `seed` seeds
    the draws (None: a fresh random seed). Raises ValueError for num or max_tokens < 1, a
    temperature <= 0, a prompt character outside the vocabulary, or (lines) a prompt
    holding the boundary (a line end); TypeError for a prompt that is not a str.
    """
    num = DEFAULT_NUM[task.mode] if num is None else num
    max_tokens = DEFAULT_MAX_TOKENS[task.mode] if max_tokens is None else max_tokens
    check_arguments(task, num, max_tokens, temperature, prompt, seed)
    context = contexts(task, [prompt]).expand(num, -1)
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    drawn, done = [], torch.zeros(num, dtype=torch.bool)
    with torch.no_grad():
        for _ in range(max_tokens):
            logits = model(context.to(_device(model)))
            if logits.dim() == 3:  # target sequence: the prediction after the last position
                logits = logits[:, -1]
            logits = logits.double().cpu()
            # softmax(z / T) of z less its maximum (the same, as softmax is shift-invariant):
            # a tiny T then takes the likeliest token, where z / T would overflow to inf − inf
            probs = torch.softmax((logits - logits.amax(-1, keepdim=True)) / temperature, -1)
            token = torch.multinomial(probs, 1, generator=generator)  # (num, 1)
            drawn.append(token)
            context = torch.cat([context[:, 1:], token], 1)
            if task.mode == "lines":
                done |= token[:, 0] == 0  # the boundary token ends the item
                if bool(done.all()):
                    break
    return [prompt + _decode(row, task) for row in torch.cat(drawn, 1).tolist()]


def check_arguments(task: Any, num: Any, max_tokens: Any, temperature: Any,
                    prompt: Any, seed: Any = None) -> None:
    """generate's arguments: TypeError for a prompt that is not a str, ValueError naming
    the first bad one (see generate)."""
    if not isinstance(prompt, str):
        raise TypeError(f"sample: the prompt must be a str (text every sample starts with), "
                        f"got {type(prompt).__name__}")
    if not isinstance(num, int) or num < 1:
        raise ValueError(f"sample: the number of samples must be an integer >= 1, got {num}")
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"sample: max tokens must be an integer >= 1, got {max_tokens}")
    if not temperature > 0:
        raise ValueError(f"sample: the temperature must be > 0 (1 samples the model's own "
                         f"probabilities, lower is greedier), got {temperature}")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)
                             or not 0 <= seed < SEED_LIMIT):
        raise ValueError(f"sample: the seed must be an integer from 0 to 2**63 - 1 (as a "
                         f"config's seed) or None for a fresh one, got {seed!r}")
    if task.mode == "lines" and (task.boundary in prompt or "\r" in prompt):
        # a line end as a text file's lines end: "\n", "\r\n" or "\r" (universal newlines)
        raise ValueError(f"sample: the prompt {prompt!r} holds a line end, which ends an item "
                         "of a lines run; give the start of one item (one line)")


def _decode(ids: list[int], task: Any) -> str:
    """The characters of sampled ids; in lines mode up to the first boundary token."""
    if task.mode == "lines" and 0 in ids:
        ids = ids[:ids.index(0)]
    return "".join(task.vocabulary[i] for i in ids)


def _device(model: Any) -> torch.device:
    params = model.parameters()
    return params[0].data.device if params else torch.device("cpu")

"""The Ollama ``Modelfile`` of an exported model, and a parser that reads a Modelfile as Ollama does.

The TEMPLATE is the model's own chat template rendered around marker strings and cut into Go-template text,
so Ollama sends exactly the training conversation: the run's system prompt (SYSTEM), the prompt's user message
around the sentence (a user sends the sentence alone), greedy decoding, the chat template's stop tokens.
Ollama itself cannot be installed here; `parse_modelfile` follows its parser's rules so tests can check what
Ollama would read.
"""

from __future__ import annotations

from ..errors import UsageError

MODELFILE = "Modelfile"
# Ollama's defaults that change greedy answers: repeat_penalty 1.1 penalises the repeated JSON keys of
# every answer; temperature 0.8 samples. The exported model is decoded as llm-ner decodes it.
OLLAMA_PARAMETERS = (("temperature", "0"), ("repeat_penalty", "1"), ("top_k", "1"))


def _go_literal(text: str) -> str:
    """``text`` as literal Go-template text: ``{{`` would open an action."""
    return text.replace("{{", '{{ "{{" }}')


def _split_once(text: str, marker: str, what: str) -> tuple[str, str]:
    parts = text.split(marker)
    if len(parts) != 2:
        raise UsageError(f"the {what} uses the sentence {len(parts) - 1} times; an Ollama TEMPLATE needs it once")
    return parts[0], parts[1]


def chat_pieces(tokenizer, prompt, answer_format: str) -> dict[str, str]:
    """The pieces of one conversation as the model's chat template renders it for the run's prompt:
    ``system`` (the rendered system prompt), ``before_system``, ``system_to_user``, the user message's
    ``user_prefix`` and ``user_suffix`` around the sentence, and ``after_user`` (end of turn, the assistant's
    start: Qwen3's empty thinking block included). `UsageError` for a prompt Ollama cannot hold."""
    sentence, other = "\u2063SENTENCE\u2063", "\u2063OTHER\u2063"
    messages = prompt.messages(sentence, answer_format)
    roles = [m["role"] for m in messages]
    if roles != ["system", "user"] or prompt.messages(other, answer_format)[0] != {
        "role": "system",
        "content": messages[0]["content"].replace(sentence, other),
    }:
        raise UsageError("an Ollama SYSTEM is one fixed text: this prompt has no system message or one per sentence")
    system = messages[0]["content"]
    if sentence in system:
        raise UsageError("an Ollama SYSTEM is one fixed text: this prompt's system message holds the sentence")
    user_prefix, user_suffix = _split_once(messages[1]["content"], sentence, "prompt's user message")
    system_mark = "\u2063SYSTEM\u2063"
    rendered = tokenizer.apply_chat_template(
        [{"role": "system", "content": system_mark}, {"role": "user", "content": messages[1]["content"]}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=False,
    )
    before_system, rest = _split_once(rendered, system_mark, "chat template (system)")
    system_to_user, after_user = _split_once(rest, messages[1]["content"], "chat template (user)")
    return {
        "system": system,
        "before_system": before_system,
        "system_to_user": system_to_user,
        "user_prefix": user_prefix,
        "user_suffix": user_suffix,
        "after_user": after_user,
    }


def stop_tokens(tokenizer) -> list[str]:
    """The tokens that end an answer: the end of turn of a ChatML template and the tokenizer's eos/pad."""
    stops = ["<|im_end|>"] if "<|im_end|>" in tokenizer.get_vocab() else []
    for token in (tokenizer.eos_token, tokenizer.pad_token):
        if token and token not in stops:
            stops.append(token)
    return stops


def _quoted(value: str, what: str) -> str:
    if '"""' in value:
        raise UsageError(f'the {what} holds """, which an Ollama Modelfile cannot quote')
    return f'"""{value}"""'


def ollama_modelfile(gguf_name: str, tokenizer, prompt, answer_format: str, num_ctx: int = 4096, others=()) -> str:
    """An Ollama ``Modelfile`` for a GGUF beside it: the chat template with the prompt's user message around
    the sentence (a user sends the sentence alone), the run's system prompt, greedy decoding, the stop tokens."""
    pieces = chat_pieces(tokenizer, prompt, answer_format)
    stops = stop_tokens(tokenizer)
    between = pieces["system_to_user"]  # the system turn's end, then the user turn's start
    turn_start = between.rfind("<|im_start|>")
    if turn_start == -1:
        raise UsageError("the Modelfile's TEMPLATE is written for ChatML chat templates (Qwen): no <|im_start|>")
    end_of_turn = stops[0] if stops else ""
    # Ollama's single-turn variables: .System (the SYSTEM line unless the request brings one), .Prompt (the
    # user's sentence), .Response (empty while generating). Each block is exactly the chat template's text.
    template = (
        "{{ if .System }}"
        + _go_literal(pieces["before_system"])
        + "{{ .System }}"
        + _go_literal(between[:turn_start])
        + "{{ end }}{{ if .Prompt }}"
        + _go_literal(between[turn_start:] + pieces["user_prefix"])
        + "{{ .Prompt }}"
        + _go_literal(pieces["user_suffix"] + pieces["after_user"])
        + "{{ end }}{{ .Response }}"
        + (f"{{{{ if .Response }}}}{_go_literal(end_of_turn)}{{{{ end }}}}" if end_of_turn else "")
    )
    lines = [
        f"# Ollama Modelfile written by llm-ner: `ollama create NAME -f {MODELFILE}`, then send a sentence alone.",
        f"# Prompt {prompt.name}, answer format {answer_format}; decoding as llm-ner decodes (greedy).",
    ]
    lines += [f"# Another type of this model: FROM ./{other}" for other in others]
    lines += [
        f"FROM ./{gguf_name}",
        f"TEMPLATE {_quoted(template, 'chat template')}",
        f"SYSTEM {_quoted(pieces['system'], 'system prompt')}",
    ]
    lines += [f"PARAMETER {key} {value}" for key, value in OLLAMA_PARAMETERS]
    lines += [f'PARAMETER stop "{token}"' for token in stops]
    lines.append(f"PARAMETER num_ctx {num_ctx}")
    return "\n".join(lines) + "\n"


def parse_modelfile(text: str) -> list[tuple[str, str]]:
    """(instruction, value) pairs of a Modelfile as Ollama's parser reads them: one instruction a line
    (case-insensitive), ``#`` comments, values bare to the end of the line, in "quotes" or in \"\"\"triple
    quotes\"\"\" that may span lines; PARAMETER values are ``name value``. `ValueError` where Ollama fails."""
    commands = {"from", "template", "system", "parameter", "adapter", "license", "message", "requires"}
    result, position = [], 0
    while position < len(text):
        end = text.find("\n", position)
        line = text[position : end if end != -1 else len(text)]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            position = (end + 1) if end != -1 else len(text)
            continue
        name, _, rest = stripped.partition(" ")
        if name.lower() not in commands:
            raise ValueError(f"unknown Modelfile instruction {name!r}")
        rest = rest.lstrip()
        if name.lower() in ("parameter", "message"):
            key, _, rest = rest.partition(" ")
            rest = rest.lstrip()
        else:
            key = ""
        start = position + line.index(stripped) + len(name)
        start = text.index(rest, start) if rest else start
        if rest.startswith('"""'):
            close = text.find('"""', start + 3)
            if close == -1:
                raise ValueError(f"unterminated triple-quoted {name} value")
            value = text[start + 3 : close]
            after = text.find("\n", close)
            if text[close + 3 : after if after != -1 else len(text)].strip():
                raise ValueError(f"text after the closing triple quotes of {name}")
            position = (after + 1) if after != -1 else len(text)
        else:
            value = rest
            if value.startswith('"'):
                if not value.endswith('"') or len(value) < 2:
                    raise ValueError(f"unterminated quoted {name} value")
                value = value[1:-1]
            position = (end + 1) if end != -1 else len(text)
        result.append((name.lower(), f"{key} {value}" if key else value))
    return result

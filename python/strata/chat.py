"""Chat templates from GGUF metadata, rendered in Jinja2's immutable sandbox.

A template comes from an untrusted file: it is rendered with
``ImmutableSandboxedEnvironment`` (no attribute access to internals, no mutation of
passed-in objects), and its output size is bounded, so a hostile template raises
:class:`ChatTemplateError` instead of running code or exhausting memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import StrataError, StrataValueError

MAX_RENDERED_CHARS = 1 << 22  # 4 Mi characters: far above any real prompt


class ChatTemplateError(StrataError):
    """The model's chat template failed to compile or render."""


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(f"chat template raised: {message}")


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.filters["tojson"] = _tojson
    return env


def _tojson(value: object, indent: int | None = None) -> str:
    import json

    return json.dumps(value, indent=indent, ensure_ascii=False)


def validate_messages(messages: Sequence[Mapping[str, object]]) -> list[dict[str, object]]:
    """Checks the OpenAI-style message list; returns plain dict copies."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise StrataValueError("messages must be a non-empty list of {'role', 'content'} dicts")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str):
            raise StrataValueError(f"messages[{i}] must be a dict with a string 'role'")
        if not isinstance(m.get("content", ""), str):
            raise StrataValueError(f"messages[{i}]['content'] must be a string")
        out.append(dict(m))
    return out


def render_chat(
    template: str,
    messages: Sequence[Mapping[str, object]],
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
) -> str:
    """Renders ``messages`` with ``template`` as llama.cpp's Jinja path does.

    Raises:
        ChatTemplateError: the template is invalid, raised an error, tried something the
            sandbox forbids, or produced more than MAX_RENDERED_CHARS characters.
        StrataValueError: ``messages`` is malformed.
    """
    msgs = validate_messages(messages)
    try:
        compiled = _environment().from_string(template)
        pieces = []
        size = 0
        for piece in compiled.generate(
            messages=msgs,
            bos_token=bos_token,
            eos_token=eos_token,
            add_generation_prompt=add_generation_prompt,
        ):
            size += len(piece)
            if size > MAX_RENDERED_CHARS:
                raise ChatTemplateError(
                    f"chat template output exceeds {MAX_RENDERED_CHARS} characters"
                )
            pieces.append(piece)
        return "".join(pieces)
    except ChatTemplateError:
        raise
    except jinja2.exceptions.SecurityError as e:
        raise ChatTemplateError(f"chat template tried an unsafe operation: {e}") from None
    except jinja2.TemplateError as e:
        raise ChatTemplateError(f"chat template error: {e}") from None
    except RecursionError:
        raise ChatTemplateError("chat template recursed too deeply") from None

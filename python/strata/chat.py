"""Chat templates from GGUF metadata, rendered in a hardened Jinja2 sandbox.

A template comes from an untrusted file (llama-cpp-python's CVE-2024-34359 was remote code
execution through exactly this), so it is rendered with a subclass of Jinja2's
``ImmutableSandboxedEnvironment`` that adds three things to the sandbox:

* **Unsafe access raises at once.** The stock sandbox turns ``x.__class__`` into an
  ``Undefined`` that raises only when used further; printing, testing or iterating it
  silently gives nothing, so a template can probe the sandbox unnoticed. Here any access
  the sandbox refuses (``_``-prefixed attributes, function and frame internals, mutating
  methods) raises :class:`ChatTemplateError` on the spot, and a payload such as
  ``().__class__.__base__.__subclasses__()`` fails at its first step and runs nothing.
  ``{% import %}``/``{% include %}``/``{% extends %}`` have no loader and fail the same way.
* **A CPU-time bound.** Jinja2 compiles a template to Python, so the render runs in the
  calling thread under a ``sys.settrace`` hook that counts trace events and, every few
  hundred, compares this thread's CPU time (``time.thread_time``: time spent waiting for
  the GIL does not count) with a deadline, and raises when it is past. This stops any
  loop, however it is written (nested ``range`` loops, recursive macros, ``loop()``
  recursion), including in the compiler itself. A watchdog thread could not do this:
  Python cannot stop another thread, and a trace hook runs inside the one it guards.
* **Size bounds.** The rendered output is limited to :data:`MAX_RENDERED_CHARS`, and so is
  every value a template can build up: the arithmetic operators are intercepted
  (``"a" * 10**9``, ``9**9**9**9`` and ``"%999999999d"`` are refused before they
  allocate or compute, which also keeps Jinja2's constant folder from hanging the
  compiler), calls and filters that amplify (``center``, ``join``, ``replace``,
  ``indent``, ``format``...) are checked before they run, and every call result,
  macro argument and ``namespace`` assignment is checked after.

What remains possible: a template may use up to its time budget of CPU and transiently
a few times :data:`MAX_RENDERED_CHARS` characters of memory; it cannot touch files,
processes, the network, Python internals, or the objects passed in.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import Namespace

from .errors import StrataError, StrataValueError

MAX_RENDERED_CHARS = 1 << 22  # 4 Mi characters: far above any real prompt
MAX_VALUE_LEN = MAX_RENDERED_CHARS  # longest string/list/dict a template may build
MAX_INT_BITS = 4096  # largest integer a template may compute
MAX_RENDER_SECONDS = 2.0  # CPU seconds; real templates take milliseconds
MAX_JSON_INDENT = 64
_CHECK_EVERY = 256  # trace events between two clock reads
_SIZED = (str, bytes, list, tuple, dict, set, frozenset)
# A printf-style conversion ("%-08.3f", "%*d", "%(name)s") and a str.format replacement
# field's spec ("{0:>{1}}"): where widths and precisions are.
_PERCENT_SPEC = re.compile(r"%(?:%|(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?)")
_BRACE_SPEC = re.compile(r"\{[^{}]*?:((?:[^{}]|\{[^{}]*\})*)\}")
_DIGITS = re.compile(r"\d+")
# Methods of built-in values whose integer arguments are output sizes.
_SIZE_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs", "to_bytes"})


class ChatTemplateError(StrataError):
    """The model's chat template failed to compile or render, or broke a sandbox rule."""


class _OutOfTime(BaseException):
    """Raised by the trace hook; a BaseException so that no ``except Exception`` inside
    Jinja2 or a filter can swallow it."""


# -- size checks ---------------------------------------------------------------------------


def _check_size(value: object, what: str) -> object:
    if isinstance(value, _SIZED) and len(value) > MAX_VALUE_LEN:
        raise ChatTemplateError(
            f"chat template built a {type(value).__name__} of length {len(value)} in {what}, "
            f"over the limit of {MAX_VALUE_LEN}"
        )
    if isinstance(value, int):
        _check_bits(value.bit_length())
    return value


def _check_length(n: int, what: str) -> None:
    if n > MAX_VALUE_LEN:
        raise ChatTemplateError(
            f"chat template {what} would build {n} characters or items, over the limit of "
            f"{MAX_VALUE_LEN}"
        )


def _check_width(digits: str, what: str) -> None:
    if len(digits) > 7 or int(digits) > MAX_VALUE_LEN:
        raise ChatTemplateError(f"chat template {what}: width {digits} is too large")


def _check_percent(fmt: object, args: object, what: str) -> None:
    """Refuses ``fmt % args`` with a huge width or precision, written or given by ``*``."""
    if not isinstance(fmt, str):
        return
    star = False
    for m in _PERCENT_SPEC.finditer(fmt):
        for g in m.groups():
            if g == "*":
                star = True
            elif g:
                _check_width(g, what)
    if star:
        _check_int_args((args,), what)


def _check_brace(fmt: object, args: object, what: str) -> None:
    """Refuses ``fmt.format(...)`` with a huge width or precision, written or nested."""
    if not isinstance(fmt, str):
        return
    nested = False
    for m in _BRACE_SPEC.finditer(fmt):
        nested = nested or "{" in m.group(1)
        for d in _DIGITS.finditer(m.group(1)):
            _check_width(d.group(), what)
    if nested:
        _check_int_args(args, what)  # type: ignore[arg-type]


def _check_int_args(args: Sequence[object], what: str) -> None:
    """Refuses an integer argument (or one inside a tuple/list/dict argument) larger than
    any value a template may build: the widths, counts and sizes of ``str.center``,
    ``int.to_bytes``, ``"%*d"``, ``"{:{}}".format`` and the like."""
    for a in args:
        items = a.values() if isinstance(a, dict) else a if isinstance(a, (tuple, list)) else (a,)
        for x in items:
            if isinstance(x, int) and not isinstance(x, bool) and abs(x) > MAX_VALUE_LEN:
                raise ChatTemplateError(f"chat template {what}: argument {x} is too large")


def _int_arg(x: object) -> int:
    return x if isinstance(x, int) else 0


def _joined_length(items: Sequence[object], sep: object) -> int:
    return sum(len(str(x)) for x in items) + max(len(items) - 1, 0) * len(str(sep))


def _check_bits(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise ChatTemplateError(f"chat template computed an integer over {MAX_INT_BITS} bits")


def _check_binop(op: str, a: object, b: object) -> None:
    """Predicts the size of ``a op b`` for the operators that can blow up."""
    if op == "*":
        for seq, n in ((a, b), (b, a)):
            if isinstance(seq, _SIZED) and isinstance(n, int):
                _check_length(len(seq) * max(n, 0), f"'{op}'")
        if isinstance(a, int) and isinstance(b, int):
            _check_bits(a.bit_length() + b.bit_length())
    elif op == "**":
        if isinstance(a, int) and isinstance(b, int) and b > 0 and abs(a) > 1:
            _check_bits((a.bit_length() - 1) * b)
    elif op == "+":
        if isinstance(a, _SIZED) and isinstance(b, _SIZED):
            _check_length(len(a) + len(b), f"'{op}'")
    elif op == "%":
        _check_percent(a, b, "'%' formatting")


def _replaced_length(s: str, old: object, new: object) -> int:
    if not isinstance(old, str) or not isinstance(new, str):
        return len(s)
    n = len(s) + 1 if old == "" else s.count(old)
    return len(s) + n * len(new)


def _translated_length(s: str, table: object) -> int:
    if not isinstance(table, dict):
        return len(s)
    longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
    return len(s) * max(longest, 1)


# str methods that can build a long string from short arguments: what they would build
# (integer arguments such as center's width are bounded separately, for every method).
_STR_METHOD_SIZES: dict[str, Callable[..., int]] = {
    "expandtabs": lambda s, t=8, *_, **__: len(s) * max(_int_arg(t), 1),
    "replace": lambda s, old="", new="", *_, **__: _replaced_length(s, old, new),
    "translate": lambda s, table=None, *_, **__: _translated_length(s, table),
    "join": lambda s, items=(), *_, **__: _joined_length(items, s),
}


def _bounded_filters(filters: dict[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """Jinja2's filters, each with its result size checked, and the amplifying ones with
    their arguments checked before they run."""
    out: dict[str, Callable[..., Any]] = {}
    for name, f in filters.items():
        out[name] = _checked_filter(name, f)
    prechecks: dict[str, Callable[..., None]] = {
        # (filters that take the environment or eval context get it as their first argument)
        "center": lambda value, width=80, *a, **k: _check_length(_int_arg(width), "center"),
        "indent": lambda value, width=4, *a, **k: _check_length(
            len(str(value)) * (1 + (width if isinstance(width, int) else len(str(width)))),
            "indent",
        ),
        "join": lambda ctx, value, d="", *a, **k: _check_length(
            _joined_length(value, d) if isinstance(value, (list, tuple)) else 0, "join"
        ),
        "replace": lambda ctx, s, old, new, *a, **k: _check_length(
            _replaced_length(str(s), str(old), str(new)), "replace"
        ),
        "format": lambda value, *a, **k: _check_percent(value, (*a, k), "format filter"),
        "batch": lambda value, linecount, *a, **k: _check_length(_int_arg(linecount), "batch"),
        "slice": lambda value, slices, *a, **k: _check_length(_int_arg(slices), "slice"),
    }
    for name, pre in prechecks.items():
        if name in filters:
            out[name] = _checked_filter(name, filters[name], pre)
    return out


def _checked_filter(
    name: str, f: Callable[..., Any], pre: Callable[..., None] | None = None
) -> Callable[..., Any]:
    @functools.wraps(f)  # keeps jinja_pass_arg, so Jinja2 passes context/environment as before
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if name == "join" and len(args) > 1 and not isinstance(args[1], _SIZED):
            args = (args[0], list(args[1]), *args[2:])  # a generator: measure it first
        if pre is not None:
            pre(*args, **kwargs)
        return _check_size(f(*args, **kwargs), f"filter {name!r}")

    return wrapper


class _BoundedNamespace(Namespace):
    """``namespace()``, whose attribute assignments are size-checked (the one place where a
    template can accumulate a value across loop iterations)."""

    def __setitem__(self, name: str, value: Any) -> None:
        Namespace.__setitem__(self, name, _check_size(value, f"namespace attribute {name!r}"))


class _HardenedEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe"
        )

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return _check_size(super().call_binop(context, operator, left, right), f"'{operator}'")

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        for a in (*args, *kwargs.values()):
            _check_size(a, "a call argument")
        # str.format comes wrapped by the sandbox; look through the wrapper.
        target = getattr(obj, "__wrapped__", obj)
        self_obj = getattr(target, "__self__", None)
        name = getattr(target, "__name__", "")
        if isinstance(self_obj, (str, bytes, int)) and name in _SIZE_METHODS:
            _check_int_args((args, kwargs), f"{type(self_obj).__name__}.{name}")
        if isinstance(self_obj, str):
            if name == "join" and args and not isinstance(args[0], _SIZED):
                args = (list(args[0]), *args[1:])  # a generator: measure it first
            size = _STR_METHOD_SIZES.get(name)
            if size is not None:
                _check_length(size(self_obj, *args, **kwargs), f"str.{name}")
            elif name in ("format", "format_map"):
                _check_brace(self_obj, (args, kwargs, *args), f"str.{name}")
        return _check_size(
            super().call(context, obj, *args, **kwargs), f"a call to {name or 'a function'}"
        )


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(f"chat template raised: {message}")


def _tojson(value: object, indent: int | None = None) -> str:
    if indent is not None and not (isinstance(indent, int) and 0 <= indent <= MAX_JSON_INDENT):
        raise ChatTemplateError(f"chat template tojson: indent must be 0..{MAX_JSON_INDENT}")
    return json.dumps(value, indent=indent, ensure_ascii=False)


def _environment() -> _HardenedEnvironment:
    env = _HardenedEnvironment(trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.globals["namespace"] = _BoundedNamespace
    env.globals.pop("lipsum", None)  # lipsum(n) builds n paragraphs; no chat template uses it
    env.filters["tojson"] = _tojson
    env.filters = _bounded_filters(env.filters)
    return env


_ENV = _environment()  # shared: Jinja2 environments are thread-safe once configured


@functools.lru_cache(maxsize=16)
def _compile(template: str) -> jinja2.Template:
    return _ENV.from_string(template)


# -- the time bound ------------------------------------------------------------------------


class _Deadline:
    """A trace function that raises _OutOfTime once this thread has used ``seconds`` of CPU."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.thread_time() + seconds
        self.count = 0

    def __call__(self, frame: Any, event: str, arg: Any) -> Any:
        self.count += 1
        if self.count % _CHECK_EVERY == 0 and time.thread_time() > self.deadline:
            raise _OutOfTime
        # Line events only in template code (where loops without calls live); every other
        # frame is counted by its call event alone, which keeps the overhead low.
        return self if frame.f_code.co_filename == "<template>" else None

    def __enter__(self) -> None:
        self.previous = sys.gettrace()
        sys.settrace(self)

    def __exit__(self, *exc: object) -> None:
        sys.settrace(self.previous)


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
    timeout: float = MAX_RENDER_SECONDS,
) -> str:
    """Renders ``messages`` with ``template`` as llama.cpp's Jinja path does.

    ``timeout`` bounds the CPU seconds (of this thread) that compiling and rendering may
    take.

    Raises:
        ChatTemplateError: the template is invalid, raised an error, tried something the
            sandbox forbids, ran out of time, or built more than MAX_RENDERED_CHARS
            characters (in its output or any value along the way).
        StrataValueError: ``messages`` is malformed.
    """
    msgs = validate_messages(messages)
    if not isinstance(template, str):
        raise ChatTemplateError("chat template must be a string")
    try:
        with _Deadline(timeout):
            compiled = _compile(template)
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
    except _OutOfTime:
        raise ChatTemplateError(
            f"chat template ran for more than {timeout} s of CPU time (endless loop?)"
        ) from None
    except ChatTemplateError:
        raise
    except SecurityError as e:
        raise ChatTemplateError(f"chat template tried an unsafe operation: {e}") from None
    except jinja2.TemplateError as e:
        raise ChatTemplateError(f"chat template error: {e}") from None
    except RecursionError:
        raise ChatTemplateError("chat template recursed too deeply") from None
    except MemoryError:
        raise ChatTemplateError("chat template ran out of memory") from None
    except Exception as e:  # noqa: BLE001 - TypeError, OverflowError... from template code
        raise ChatTemplateError(f"chat template failed: {type(e).__name__}: {e}") from None

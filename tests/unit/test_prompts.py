"""Chat templates: messages in, prompt string out, against reference strings of each format."""

from __future__ import annotations

import datetime

import pytest

from app.prompts import (
    BUILTIN_TEMPLATES,
    PromptRenderError,
    TemplateError,
    compile_template,
)

SYSTEM = {"role": "system", "content": "Be brief."}
USER = {"role": "user", "content": "Hi"}
ASSISTANT = {"role": "assistant", "content": "Hello!"}
USER_2 = {"role": "user", "content": "How are you?"}

# Hugging Face's own example chat (transformers tests), used with the HF llama-2 template below.
HF_CHAT = [
    {
        "role": "system",
        "content": "You are a friendly chatbot who always responds in the style of a pirate",
    },
    {"role": "user", "content": "Hello, how are you?"},
    {"role": "assistant", "content": "I'm doing great. How can I help you today?"},
    {"role": "user", "content": "I'd like to show off how chat templating works!"},
]
HF_CHAT_LLAMA2 = (
    "<s>[INST] <<SYS>>\nYou are a friendly chatbot who always responds in the style of a pirate"
    "\n<</SYS>>\n\nHello, how are you? [/INST] I'm doing great. How can I help you today? </s>"
    "<s>[INST] I'd like to show off how chat templating works! [/INST]"
)

# The chat_template of meta-llama/Llama-2-7b-chat-hf's tokenizer_config.json.
LLAMA2_HF_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}"
)

# The chat_template of HuggingFaceH4/zephyr-7b-beta: relies on trim_blocks and lstrip_blocks.
ZEPHYR_TEMPLATE = """{% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>
' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>
' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>
'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}"""


def render(spec: str, messages: list[dict[str, str]], **tokens: str | None) -> str:
    return compile_template(spec, **tokens).render(messages)


# --- built-ins ---------------------------------------------------------------------------------


def test_builtin_names_compile_with_their_name() -> None:
    assert {compile_template(name).name for name in BUILTIN_TEMPLATES} == set(BUILTIN_TEMPLATES)


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([USER], "Hi"),
        ([SYSTEM, USER, ASSISTANT, USER_2], "Be brief. Hi Hello! How are you?"),
        ([{"role": "tool", "content": "42"}, {"role": "user", "content": ""}], "42 "),
        ([], ""),
    ],
)
def test_raw_joins_every_content_with_a_space(
    messages: list[dict[str, str]], expected: str
) -> None:
    assert render("raw", messages) == expected


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([USER], "<s>[INST] Hi [/INST]"),
        ([SYSTEM, USER], "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]"),
        (
            [SYSTEM, USER, ASSISTANT, USER_2],
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s>"
            "<s>[INST] How are you? [/INST]",
        ),
        (
            [
                {"role": "user", "content": "  Hi \n"},
                {"role": "assistant", "content": "\nYo  "},
                USER,
            ],
            "<s>[INST] Hi [/INST] Yo </s><s>[INST] Hi [/INST]",
        ),
        (
            [{"role": "developer", "content": "Be brief."}, USER],
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]",
        ),
        (HF_CHAT, HF_CHAT_LLAMA2),
    ],
)
def test_llama2_matches_meta_chat_completion(messages: list[dict[str, str]], expected: str) -> None:
    assert render("llama2", messages) == expected


def test_llama2_uses_given_bos_and_eos() -> None:
    prompt = render("llama2", [USER, ASSISTANT, USER_2], bos_token="", eos_token="<eos>")
    assert prompt == "[INST] Hi [/INST] Hello! <eos>[INST] How are you? [/INST]"


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (
            [USER],
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
        ),
        (
            [SYSTEM, USER, ASSISTANT, {"role": "user", "content": " How are you?\n"}],
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
        ),
        (
            [{"role": "developer", "content": "D"}, {"role": "tool", "content": "42"}],
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nD<|eot_id|>"
            "<|start_header_id|>ipython<|end_header_id|>\n\n42<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
        ),
    ],
)
def test_llama3_matches_meta_chat_format(messages: list[dict[str, str]], expected: str) -> None:
    assert render("llama3", messages) == expected


def test_llama3_bos_can_be_dropped() -> None:
    assert render("llama3", [USER], bos_token="").startswith("<|start_header_id|>user")


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([USER], "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
        (
            [SYSTEM, USER, ASSISTANT, USER_2],
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n"
            "<|im_start|>assistant\n",
        ),
        (
            [{"role": "developer", "content": "D"}, {"role": "tool", "content": " 42 "}],
            "<|im_start|>system\nD<|im_end|>\n<|im_start|>tool\n 42 <|im_end|>\n"
            "<|im_start|>assistant\n",
        ),
    ],
)
def test_chatml(messages: list[dict[str, str]], expected: str) -> None:
    assert render("chatml", messages) == expected


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([USER], "<s>[INST] Hi [/INST]"),
        ([SYSTEM, USER], "<s>[INST] Be brief.\n\nHi [/INST]"),
        (
            [SYSTEM, USER, ASSISTANT, USER_2],
            "<s>[INST] Be brief.\n\nHi [/INST] Hello!</s>[INST] How are you? [/INST]",
        ),
    ],
)
def test_mistral_puts_system_before_the_first_user_message(
    messages: list[dict[str, str]], expected: str
) -> None:
    assert render("mistral", messages) == expected


def test_mistral_uses_given_bos_and_eos() -> None:
    prompt = render("mistral", [USER, ASSISTANT, USER_2], bos_token="<B>", eos_token="<E>")
    assert prompt == "<B>[INST] Hi [/INST] Hello!<E>[INST] How are you? [/INST]"


@pytest.mark.parametrize("name", ["llama2", "mistral"])
@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([], "user message last"),
        ([SYSTEM], "user message last"),
        ([USER, ASSISTANT], "user message last"),
        ([ASSISTANT, USER], r"messages\[0\] has role 'assistant' where 'user'"),
        ([SYSTEM, USER, USER_2], r"messages\[2\] has role 'user' where 'assistant'"),
        ([USER, SYSTEM, USER_2], r"messages\[1\] has role 'system'"),
        ([SYSTEM, SYSTEM, USER], r"messages\[1\] has role 'system'"),
        ([USER, {"role": "tool", "content": "42"}, USER_2], r"messages\[1\] has role 'tool'"),
    ],
)
def test_strict_turn_templates_reject_non_alternating_roles(
    name: str, messages: list[dict[str, str]], error: str
) -> None:
    template = compile_template(name)
    with pytest.raises(PromptRenderError, match=error):
        template.render(messages)


@pytest.mark.parametrize("name", ["llama3", "chatml"])
def test_unknown_roles_are_rejected(name: str) -> None:
    with pytest.raises(PromptRenderError, match=r"messages\[1\] with role 'function'"):
        render(name, [USER, {"role": "function", "content": "x"}])


@pytest.mark.parametrize("spec", ["", "llama", "LLAMA2", "chatml ", "Hello {name}"])
def test_unknown_spec_is_a_template_error(spec: str) -> None:
    with pytest.raises(TemplateError, match="unknown chat template"):
        compile_template(spec)


# --- Jinja ---------------------------------------------------------------------------------


def test_jinja_llama2_template_matches_the_builtin() -> None:
    template = compile_template(LLAMA2_HF_TEMPLATE, bos_token="<s>", eos_token="</s>")
    assert template.name == "jinja"
    assert template.render(HF_CHAT) == HF_CHAT_LLAMA2
    chat = [SYSTEM, USER, ASSISTANT, USER_2]
    assert template.render(chat) == render("llama2", chat)


def test_jinja_zephyr_template_uses_trim_and_lstrip_blocks() -> None:
    prompt = render(ZEPHYR_TEMPLATE, [SYSTEM, USER], eos_token="</s>")
    assert prompt == "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\n"


def test_jinja_tokens_default_to_empty() -> None:
    prompt = render("[{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}]", [USER])
    assert prompt == "[||True]"


def test_jinja_sees_message_names_and_attribute_access() -> None:
    spec = "{% for m in messages %}{{ m.role }}:{{ m.name }}:{{ m['content'] }};{% endfor %}"
    assert render(spec, [{"role": "user", "content": "Hi", "name": "ann"}]) == "user:ann:Hi;"


def test_jinja_tools_is_none_like_hugging_face() -> None:
    assert render("{{ tools is none }}/{{ documents is none }}", [USER]) == "True/True"


def test_jinja_tojson_does_not_escape_html_or_unicode() -> None:
    spec = "{{ messages[0] | tojson }}|{{ {'b': 1, 'a': [2]} | tojson(indent=1, sort_keys=true) }}"
    prompt = render(spec, [{"role": "user", "content": "<é & 'x'>"}])
    assert prompt == '{"role": "user", "content": "<é & \'x\'>"}|{\n "a": [\n  2\n ],\n "b": 1\n}'


def test_jinja_loopcontrols_and_strftime_now() -> None:
    spec = "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.content }}"
    spec += "{% endfor %}|{{ strftime_now('%Y') }}"
    prompt = render(spec, [USER, ASSISTANT])
    assert prompt == f"Hi|{datetime.datetime.now().year}"


def test_jinja_raise_exception_is_a_render_error_with_its_message() -> None:
    template = compile_template(LLAMA2_HF_TEMPLATE)
    with pytest.raises(PromptRenderError, match=r"^Conversation roles must alternate"):
        template.render([USER, USER_2])


@pytest.mark.parametrize(
    "spec",
    [
        "{{ undefined_thing.attribute }}",
        "{{ messages[0]['content'] + 1 }}",
        "{{ messages[5]['role'] }}x{{ messages[5]['role'].upper() }}",
    ],
)
def test_jinja_runtime_errors_are_render_errors(spec: str) -> None:
    with pytest.raises(PromptRenderError, match="chat template error"):
        render(spec, [USER])


@pytest.mark.parametrize(
    "spec",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ messages.__class__.__base__.__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ messages.append({'role': 'user', 'content': 'x'}) }}",
        "{{ messages[0].update({'role': 'system'}) }}",
    ],
)
def test_jinja_sandbox_blocks_escapes_and_mutation(spec: str) -> None:
    with pytest.raises(PromptRenderError, match="unsafe"):
        render(spec, [USER])


def test_jinja_sandbox_hides_private_attributes() -> None:
    assert render("[{{ ''.__class__ }}{{ messages.__len__ }}]", [USER]) == "[]"


@pytest.mark.parametrize(
    "spec",
    ["{% if messages %}unclosed", "{{ messages | no_such_filter }}", "{% for %}{% endfor %}"],
)
def test_jinja_syntax_errors_are_template_errors(spec: str) -> None:
    with pytest.raises(TemplateError, match="invalid Jinja2 chat template"):
        compile_template(spec)


def test_errors_are_value_errors() -> None:
    assert issubclass(TemplateError, ValueError)
    assert issubclass(PromptRenderError, ValueError)

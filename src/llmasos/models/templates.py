"""Chat templates: LLMasOS's own ChatML template, validation, and a reference renderer.

Templates are Jinja2, rendered the way transformers renders ``chat_template``: variables
``messages``, ``tools``, ``add_generation_prompt``, ``bos_token``/``eos_token``, and a
``tojson`` filter, in a sandboxed environment. Ollama's Go templates (``{{ .Prompt }}``) are
refused with a message saying Jinja2 is expected.

`CHATML_TEMPLATE` never injects a system prompt of its own: a default system prompt is data
in the manifest (``system``), applied by the kernel only when a chat has none.
"""

from __future__ import annotations

import re

from llmasos.chat_template import compile_chat_template
from llmasos.errors import InvalidRequestError

CHATML_TEMPLATE = """\
{%- macro text(content) -%}
{%- if content is string -%}{{ content }}
{%- elif content is iterable -%}
{%- for part in content if part.type == 'text' -%}{{ part.text }}{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
{%- set system = messages[0] if messages and messages[0].role == 'system' else none -%}
{%- if tools -%}
<|im_start|>system
{% if system %}{{ text(system.content) }}

{% endif -%}
You can call these tools. Each is described by a JSON schema:
<tools>
{% for tool in tools %}{{ (tool.function if tool.function is defined else tool) | tojson }}
{% endfor -%}
</tools>
To call a tool, reply with one line per call:
<tool_call>{"name": "tool name", "arguments": {"argument": "value"}}</tool_call><|im_end|>
{% elif system -%}
<|im_start|>system
{{ text(system.content) }}<|im_end|>
{% endif -%}
{%- for message in messages -%}
{%- if not (loop.first and system) -%}
<|im_start|>{{ message.role }}
{% if message.content %}{{ text(message.content) }}{% endif -%}
{%- if message.tool_calls -%}
{%- for call in message.tool_calls -%}
{%- set function = call.function if call.function is defined else call -%}
{%- if message.content or not loop.first %}{{ '\\n' }}{% endif -%}
<tool_call>{"name": {{ function.name | tojson }}, "arguments": \
{{ (function.arguments if function.arguments is string else (function.arguments | tojson)) }}}\
</tool_call>
{%- endfor -%}
{%- endif -%}
<|im_end|>
{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<|im_start|>assistant
{% endif -%}
"""
"""ChatML (``<|im_start|>role\\ncontent<|im_end|>\\n``), with tools listed in the system turn."""

CHATML_STOP = ("<|im_end|>",)

_GO_TEMPLATE = re.compile(r"\{\{-?\s*(\.[A-Za-z]|(if|range|with|template|block|end)\b)")


def looks_like_go_template(template: str) -> bool:
    """True for Ollama-style Go templates (``{{ .Prompt }}``, ``{{ if .System }}``)."""
    return bool(_GO_TEMPLATE.search(template))


def check_template(template: str) -> None:
    """Raise `InvalidRequestError` unless ``template`` is a Jinja2 chat template."""
    if looks_like_go_template(template):
        raise InvalidRequestError(
            "TEMPLATE looks like an Ollama Go template ({{ .Prompt }}); LLMasOS expects a "
            "Jinja2 chat template, e.g. {% for message in messages %}...{% endfor %}"
        )
    try:
        compile_chat_template(template)
    except InvalidRequestError as error:
        raise InvalidRequestError(f"TEMPLATE is not a valid Jinja2 template: {error}") from None

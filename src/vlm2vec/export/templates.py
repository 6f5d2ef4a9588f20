"""The prompt format a model was trained with, written as the chat template a target library applies.

sentence-transformers (and vLLM's pooling runner) render multimodal inputs as chat messages through the
processor's `chat_template.jinja`; a named prompt arrives as a system message. These templates render
exactly the token sequence our processors build, so the last token (the pooled one) is the same:

- `qwen3_vl_embedding`: the Qwen chat markup, the model's instruction as default system message, images
  as ``<|vision_start|><|image_pad|><|vision_end|>`` before the text, and the generation prompt
  ``<|im_start|>assistant\\n`` (written as an expression: Jinja drops a template's final newline).
- `native`: no chat markup; the system message (a named prompt) then the items, images between their
  vision markers.
The `vlm2vec` format needs none: its exports are text-only and sentence-transformers prepends a named
prompt to the text, as the instruction stands in our items.
"""

from __future__ import annotations

from ..backbones.qwen3vl import embedding_instruction

_NATIVE_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
_CONTENT = (
    "{% if m.content is string %}{{ m.content }}{% else %}{% for c in m.content %}"
    "{% if c.type == 'image' %}" + _NATIVE_IMAGE + "{% elif c.type == 'text' %}{{ c.text }}{% endif %}"
    "{% endfor %}{% endif %}"
)


def qwen3_vl_embedding_template(system_instruction: str) -> str:
    """Qwen3-VL-Embedding's chat format with `system_instruction` as the default system message."""
    default = embedding_instruction(system_instruction).replace("'", "\\'")
    return (
        "{% if messages[0].role != 'system' %}{{ '<|im_start|>system\\n" + default + "<|im_end|>\\n' }}"
        "{% endif %}{% for m in messages %}<|im_start|>{{ m.role }}\n" + _CONTENT + "<|im_end|>\n"
        "{% endfor %}{{ '<|im_start|>assistant\\n' }}"
    )


def native_template() -> str:
    """Items (after any system message) with images between their vision markers, no chat markup."""
    return "{% for m in messages %}" + _CONTENT + "{% endfor %}"


def chat_template(prompt_format: str, system_instruction: str) -> str | None:
    """The template for a Qwen-VL prompt format, or None when the export carries text only."""
    if prompt_format == "qwen3_vl_embedding":
        return qwen3_vl_embedding_template(system_instruction)
    if prompt_format == "native":
        return native_template()
    return None


__all__ = ["chat_template", "native_template", "qwen3_vl_embedding_template"]

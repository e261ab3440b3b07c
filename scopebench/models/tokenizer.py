"""Text in: a word-level tokenizer for small closed-vocabulary models (the demo family and tests), and the
prompt layout (``layout``): the template, the chat template and where each image's visual tokens go."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from scopebench.config import IMAGE_PLACEHOLDER
from scopebench.errors import ScopebenchError

SPECIALS = ["<pad>", "<unk>", "<eos>"]
WORD = re.compile(r"\w+|[^\w\s]+")


def build_word_tokenizer(corpus: Iterable[str]):
    """A transformers fast tokenizer whose vocabulary is every word/punctuation run in ``corpus``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for text in corpus for w in WORD.findall(text)})  # case-sensitive: "D" and "d" differ
    vocab = {tok: i for i, tok in enumerate(SPECIALS + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(WORD.pattern), behavior="isolated")])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>",
        clean_up_tokenization_spaces=False
    )


# ----- prompt layout ------------------------------------------------------------------------------
_IN_PROMPT = re.compile(r"<image(?: (\d+))?>")  # a prompt's own placeholders and MMMU-style markers
_SLOT = re.compile("\x00(\\d+)\x00")  # an image's place while the text is built


@dataclass
class Layout:
    """A request's text as the LLM sees it: token ids, and where each image's visual tokens go."""

    ids: list[int]
    slots: list[int]  # per placed image, in text order: the text index its visual tokens go before
    images: list[int]  # per slot: which of the request's images (an image may be placed twice)


def render(cfg, tokenizer, prompt: str, n_images: int) -> tuple[str, list[int]]:
    """The full text of a prompt, with ``<image>`` wherever an image goes, and the image at each.

    A prompt's own ``<image>`` placeholders take its images in order, its ``<image k>`` markers image k
    (``interleave``); the images left go, in order, at the template's placeholder. With ``chat_template``
    the template's text is the user turn of the tokenizer's chat template (after ``system_prompt``)."""
    free = list(range(n_images))

    def own(match: re.Match) -> str:
        k = match.group(1)
        if k is None:  # a bare placeholder: the next image not yet placed (none left: nothing)
            if not free:
                return ""
            i = free[0]
        elif cfg.interleave and 1 <= int(k) <= n_images:
            i = int(k) - 1
        else:  # a marker kept as text (interleave off, or its image dropped above max_images)
            return match.group(0)
        if i in free:
            free.remove(i)
        return f"\x00{i}\x00"

    body = _IN_PROMPT.sub(own, prompt)
    head, tail = cfg.prompt_template.split(IMAGE_PLACEHOLDER)
    text = (head.format(prompt=body) + "".join(f"\x00{i}\x00" for i in free) + tail.format(prompt=body))
    if cfg.chat_template:
        if getattr(tokenizer, "chat_template", None) is None:
            raise ScopebenchError(f"model '{cfg.name}': chat_template is true but its tokenizer has no chat "
                                  "template (chat_template.jinja or tokenizer_config.json); write the "
                                  "layout into prompt_template instead")
        system = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt is not None else []
        text = tokenizer.apply_chat_template([*system, {"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
    order = [int(i) for i in _SLOT.findall(text)]
    return _SLOT.sub(IMAGE_PLACEHOLDER, text), order


def layout(cfg, tokenizer, prompt: str, n_images: int) -> Layout:
    """One prompt's ``layouts``."""
    return layouts(cfg, tokenizer, [prompt], [n_images])[0]


def layouts(cfg, tokenizer, prompts: list[str], counts: list[int]) -> list[Layout]:
    """Render and tokenise prompts (``counts``: images per prompt), in one tokenizer call for the batch. A
    tokenizer that has ``<image>`` as a token of its own (LLaVA's) reads each whole text, as transformers'
    processors do, and each such token marks a slot; any other reads the pieces between the placeholders
    (its special tokens, if ``add_special_tokens``, on the first)."""
    rendered = [render(cfg, tokenizer, p, n) for p, n in zip(prompts, counts, strict=True)]
    out = []
    if IMAGE_PLACEHOLDER in tokenizer.get_added_vocab():
        image_id = tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER)
        tokens = tokenizer([t for t, _ in rendered], add_special_tokens=cfg.add_special_tokens)["input_ids"]
        for row, (_, order) in zip(tokens, rendered, strict=True):
            ids: list[int] = []
            slots: list[int] = []
            for t in row:
                if t == image_id:
                    slots.append(len(ids))
                else:
                    ids.append(t)
            out.append(Layout(ids, slots, order))
        return out
    pieces = [t.split(IMAGE_PLACEHOLDER) for t, _ in rendered]
    heads = tokenizer([p[0] for p in pieces], add_special_tokens=cfg.add_special_tokens)["input_ids"]
    rest = [q for p in pieces for q in p[1:]]
    tails = iter(tokenizer(rest, add_special_tokens=False)["input_ids"] if rest else [])
    for head, p, (_, order) in zip(heads, pieces, rendered, strict=True):
        ids, slots = list(head), []
        for _ in p[1:]:
            slots.append(len(ids))
            ids += next(tails)
        out.append(Layout(ids, slots, order))
    return out

"""One prompt format: for one passage, the prompt the server builds on each route and the training row curation
builds for it are the same token ids up to the target (the real 31M model's tokenizer and the real engine)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from serving_fixtures import tiny_engine

from penwright.server.context import Services
from penwright.server.protocol import CompletionRequest
from penwright.server.services.completion import CompletionService
from penwright.server.settings import ServerSettings
from penwright.trainer import prompt_format as pf
from penwright.trainer.curate.chunk import Chunk
from penwright.trainer.curate.pairs import _inline, _row, continuation_prompt, fim_pair
from penwright.trainer.data import encode_row, row_token_parts
from penwright.trainer.settings import CurationSettings

PASSAGE = (
    "The lamp was lit before the tide turned. Maren counted the steps as she always did, ninety-one of them, "
    "and at the top she stood a while with her hand on the cold brass.\n\n"
    "Below, the boats came in one by one. Edwin's was the last, as it always was. She watched its lantern "
    "swing between the rocks and did not breathe until it cleared the Widow's Teeth. Then she went down to "
    "put the kettle on, because he would want tea and would not ask for it."
)
LORE = "[Maren Vell (character)]\nKeeper of the Carrow Point light for eleven winters."


@pytest.fixture(scope="module")
def served(gutenberg_31m):
    engine = tiny_engine(gutenberg_31m)
    services = Services(settings=ServerSettings(), engine=engine)
    yield services, CompletionService(services)
    services.close()


def served_ids(services, prompt: str) -> list[int]:
    return services.engine.encode(prompt)


def training_prompt_ids(services, row: dict) -> list[int]:
    tokenizer = services.engine.backend.tokenizer
    prompt_ids, target_ids = row_token_parts(tokenizer, row)
    sample, _ = encode_row(tokenizer, row, 4096)
    assert sample.input_ids == prompt_ids + target_ids  # what the trainer feeds is prompt, then target
    return prompt_ids


def chunks() -> list[Chunk]:
    return [Chunk(id="a" * 16, source="ch1.md", text=PASSAGE, tokens=120, scene=0, index=0, words=len(PASSAGE.split()))]


def test_inline_continuation_route(served):
    services, completions = served
    context, target = continuation_prompt(chunks(), 0, 10_000)
    row = _inline(context, target, "continuation", chunks()[0])
    req = CompletionRequest(model="penwright:base", prompt=context, max_tokens=8)
    prepared = asyncio.run(completions.prepare_completion(req))
    assert served_ids(services, prepared.request.prompt) == training_prompt_ids(services, row)
    assert prepared.request.prompt == context  # raw text: no chat frame, no system prompt


def test_fim_route_with_the_models_own_sentinels(served):
    services, completions = served
    style = services.engine.fim_style
    assert style == "qwen"
    prompt, middle = fim_pair(chunks()[0], style)
    row = _inline(prompt, middle, "fim", chunks()[0], eos=True)
    prefix, rest = prompt[len("<|fim_prefix|>") :].split("<|fim_suffix|>")
    suffix = rest[: -len("<|fim_middle|>")]
    for req in (
        CompletionRequest(model="penwright:base", prompt=prefix, suffix=suffix, max_tokens=8),
        CompletionRequest(model="penwright:base", prompt=f"<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>"),
    ):
        prepared = asyncio.run(completions.prepare_completion(req))  # a `suffix` field, or Continue's generic sentinels
        assert served_ids(services, prepared.request.prompt) == training_prompt_ids(services, row)
    tokenizer = services.engine.backend.tokenizer
    assert row_token_parts(tokenizer, row)[1][-1] == tokenizer.eos_token_id  # a middle ends: the model learns to stop


def test_lore_route_preamble(served):
    services, _ = served
    context, target = continuation_prompt(chunks(), 0, 10_000)
    row = _inline(pf.completion_prompt(context, lore=LORE), target, "lore", chunks()[0])
    served_prompt = services.generator.render(context, None, SimpleNamespace(text=LORE))
    assert served_ids(services, served_prompt) == training_prompt_ids(services, row)
    assert served_prompt.startswith("<lore>\n[Maren Vell")


def test_chat_route_template(served):
    services, _ = served
    context, target = continuation_prompt(chunks(), 0, 10_000)
    settings = CurationSettings()
    row = _row(
        settings.system_prompt, f"Continue the story from here.\n\n{context}", target.lstrip(), "chat", chunks()[0]
    )
    served_prompt = services.engine.chat_prompt(row["messages"][:-1])
    assert served_ids(services, served_prompt) == training_prompt_ids(services, row)


def test_rag_lore_block_is_the_shared_format():
    """rag cannot import the trainer: its literal lore block must stay the shared format's."""
    from penwright.rag import inject

    assert inject.preamble(LORE) == pf.lore_preamble(LORE)
    assert inject.system_block(LORE) == pf.lore_system(LORE)

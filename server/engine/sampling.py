"""Next-token choice for the torch backend: penalties, temperature, top-k, min-p, top-p, seeded generators;
and the log-probabilities reported by `logprobs`.

torch is imported by the caller (the backend) before these run; tensors are (V,) logits of one sequence.
"""

from __future__ import annotations

from penwright.server.engine.types import SamplingParams


def apply_penalties(logits, params: SamplingParams, prompt_ids, generated: list[int]):
    """HF repetition penalty over prompt+generated ids; OpenAI frequency/presence penalties over generated ids."""
    import torch

    if params.repetition_penalty != 1.0:
        seen = torch.unique(torch.cat([prompt_ids, torch.tensor(generated, dtype=torch.long, device=logits.device)]))
        picked = logits[seen]
        logits[seen] = torch.where(picked > 0, picked / params.repetition_penalty, picked * params.repetition_penalty)
    if generated and (params.frequency_penalty or params.presence_penalty):
        ids, counts = torch.unique(torch.tensor(generated, dtype=torch.long, device=logits.device), return_counts=True)
        logits[ids] -= params.frequency_penalty * counts.to(logits.dtype) + params.presence_penalty
    return logits


def choose(logits, params: SamplingParams, generator) -> int:
    """Greedy when temperature is 0; otherwise temperature, then top-k, min-p and nucleus (top-p) filtering."""
    import torch

    if params.temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_k > 0 and params.top_k < probs.shape[-1]:
        kth = torch.topk(probs, params.top_k).values[-1]
        probs = probs * (probs >= kth)  # ties with the k-th token stay in
        probs = probs / probs.sum()
    if params.min_p > 0.0:
        probs = probs * (probs >= params.min_p * probs.max())  # always keeps the top token
        probs = probs / probs.sum()
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < params.top_p  # always keeps the top token
        sorted_probs = sorted_probs * keep
        pick = torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=generator)
        return int(order[pick])
    return int(torch.multinomial(probs, 1, generator=generator))


def token_logprobs(logits, ids: list[int], top: int) -> list[tuple[float, list[tuple[int, float]]]]:
    """Raw log-probabilities (before temperature and penalties, as vLLM reports them) of `ids` under (T, V)
    `logits`, where row t predicts ids[t]; with each row's `top` most likely (id, logprob) pairs."""
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)  # (T, V)
    chosen = logp.gather(1, torch.tensor(ids, dtype=torch.long, device=logp.device)[:, None])[:, 0].tolist()
    if top <= 0:
        return [(lp, []) for lp in chosen]
    values, order = torch.topk(logp, min(top, logp.shape[-1]), dim=-1)
    return [(lp, list(zip(o, v))) for lp, o, v in zip(chosen, order.tolist(), values.tolist())]


def make_generator(seed: int | None, device):
    import torch

    if seed is None:
        return None
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g

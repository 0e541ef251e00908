"""The serving contract (server/engine/contracts.py): each backend declares its optional capabilities, the engine
holds it to them once, at construction, and reads the declaration instead of probing the backend."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from penwright.server.engine import Engine, RequestError
from penwright.server.engine.contracts import Capabilities, check_backend
from penwright.server.engine.mlx_backend import MlxBackend
from penwright.server.engine.torch_backend import TorchBackend


def test_each_backend_implements_what_it_declares():
    assert check_backend(TorchBackend("unused")) == Capabilities(
        batched_decoding=True, chunked_prefill=True, warm_up=True, share_cpu=True, score=True, merge_live=True
    )
    assert not any(asdict(check_backend(MlxBackend("unused"))).values())  # one sequence at a time, nothing else


def test_a_backend_is_refused_for_what_it_declares_but_lacks():
    class ClaimsScoring(MlxBackend):
        capabilities = frozenset({"score", "merge_live"})

    with pytest.raises(TypeError, match=r"missing merge_target \(for 'merge_live'\), score \(for 'score'\)"):
        Engine(ClaimsScoring("unused"))

    class Misspelt(MlxBackend):
        capabilities = frozenset({"scores"})

    with pytest.raises(TypeError, match=r"unknown capabilities \['scores'\]"):
        Engine(Misspelt("unused"))

    class Undeclared:
        name = "bare"

    with pytest.raises(TypeError, match="declares no `capabilities`"):
        Engine(Undeclared())

    class NoGeneration(MlxBackend):
        open = None

    with pytest.raises(TypeError, match=r"missing open"):
        Engine(NoGeneration("unused"))


def test_the_engine_follows_the_declaration_not_the_attributes():
    class StepsButSaysNothing(TorchBackend):  # has step(), score(), warm_up()... but declares none of them
        capabilities = frozenset()

    quiet = Engine(StepsButSaysNothing("unused"), max_batch=8)
    assert quiet.max_batch == 1 and not quiet._warming and not quiet.caps.merge_live
    with pytest.raises(RequestError, match="logprobs are not available on the torch backend"):
        quiet.score([1, 2, 3], 1, None, None, 0)
    full = Engine(TorchBackend("unused"), max_batch=8)
    assert full.max_batch == 8 and full._warming and full.caps.score
    mlx = Engine(MlxBackend("unused"), max_batch=8)
    assert mlx.max_batch == 1 and mlx.status()["backend"] == "mlx"

"""Each vLLM recipe, pointed at scripted fake servers: the right request bodies per mode, reasoning kept."""

from __future__ import annotations

import pytest

from scale_graph import solve
from scale_graph.cli import build_parser
from scale_graph.cli.common import context_from_args
from scale_graph.context import Context
from scale_graph.testing import FakeOpenAIServer, Reply, scale_script, stage_of
from scale_graph.vllm import RECIPES, render

pytestmark = pytest.mark.integration


def thinking_script(field: str):
    def script(body):
        if stage_of(body) == "system2":
            return Reply(content="so \\boxed{20}", reasoning="long careful thought", reasoning_field=field)
        return scale_script(body)

    return script


def context_for(recipe_name: str, fast: FakeOpenAIServer, deep: FakeOpenAIServer | None):
    args = RECIPES[recipe_name].scale_args()
    args = [a.replace("http://127.0.0.1:8000/v1", fast.base_url) for a in args]
    if deep is not None:
        args = [a.replace("http://127.0.0.1:8001/v1", deep.base_url) for a in args]
    parsed = build_parser().parse_args(["solve", *args, "--candidates", "1", "P?"])
    return context_from_args(parsed, Context)


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
def test_qwen3_hybrid_switches_thinking_on_one_model(field) -> None:
    with FakeOpenAIServer(thinking_script(field), model="Qwen/Qwen3-32B") as srv:
        result = solve("P?", context=context_for("qwen3-hybrid", srv, None))
        bodies = srv.requests
    assert {b["model"] for b in bodies} == {"Qwen/Qwen3-32B"}
    thinking = {stage_of(b): b["chat_template_kwargs"]["enable_thinking"] for b in bodies}
    assert thinking == {"decompose": False, "assess": False, "system1": False, "system2": True}
    assert {b["max_completion_tokens"] for b in bodies if stage_of(b) == "system2"} == {32768}  # --profile paper
    deep = next(s for s in result.steps if s["mode"] == "system2")
    assert deep["reasoning"] == "long careful thought"
    assert deep["completion_tokens"] == 2 + 3  # the server's count includes the reasoning tokens


@pytest.mark.parametrize("name", ["qwq-qwen3", "r1-distill"])
def test_paired_recipes_send_system2_to_the_reasoning_model(name) -> None:
    recipe = RECIPES[name]
    assert recipe.system2 is not None
    with FakeOpenAIServer(scale_script, model=recipe.system1.model) as fast, \
            FakeOpenAIServer(thinking_script("reasoning"), model=recipe.system2.model) as deep:
        result = solve("P?", context=context_for(name, fast, deep))
        fast_bodies, deep_bodies = fast.requests, deep.requests
    assert {stage_of(b) for b in deep_bodies} == {"system2"}
    assert all(b["model"] == recipe.system2.model and "chat_template_kwargs" not in b for b in deep_bodies)
    assert {stage_of(b) for b in fast_bodies} == {"decompose", "assess", "system1"}
    assert all(b["model"] == recipe.system1.model for b in fast_bodies)
    assert all(b["chat_template_kwargs"] == {"enable_thinking": False} for b in fast_bodies)
    assert [s["reasoning"] for s in result.steps if s["mode"] == "system2"] == ["long careful thought"]


def test_rendered_commands_use_prefix_caching_and_the_right_parsers() -> None:
    text = render(RECIPES["qwq-qwen3"])
    assert ("env CUDA_VISIBLE_DEVICES=0 vllm serve Qwen/Qwen3-32B --host 127.0.0.1 --port 8000 "
            "--enable-prefix-caching") in text
    assert "env CUDA_VISIBLE_DEVICES=1 vllm serve Qwen/QwQ-32B" in text and "--gpu-memory-utilization" not in text
    assert "--reasoning-parser qwen3" in text and "--reasoning-parser deepseek_r1" in text
    assert "scale solve --profile paper --preset paired --base-url http://127.0.0.1:8000/v1" in text
    assert "--max-model-len 40960" in text
    tp = render(RECIPES["qwen3-hybrid"], tensor_parallel=4)
    assert "--tensor-parallel-size 4" in tp and "--gpu-memory-utilization" not in tp and "CUDA_VISIBLE" not in tp
    small = render(RECIPES["r1-distill"])
    assert small.count("env CUDA_VISIBLE_DEVICES=0 vllm serve") == 2
    assert small.count("--gpu-memory-utilization 0.45") == 2
    pair_tp = render(RECIPES["qwq-qwen3"], tensor_parallel=2)
    assert "CUDA_VISIBLE_DEVICES=0,1 vllm" in pair_tp and "CUDA_VISIBLE_DEVICES=2,3 vllm" in pair_tp

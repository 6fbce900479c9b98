"""vLLM deployment recipes: the exact ``vllm serve`` commands for each model setup, and the matching SCALE flags.

SCALE talks to vLLM through the same OpenAI-compatible API as to the embedded model, so a recipe is only two
things: how to start the server(s), and which preset/endpoint/model flags point SCALE at them. Every server gets
``--enable-prefix-caching`` (consecutive solve prompts share a growing prefix) and the reasoning parser of its
model family, so thinking arrives separately in ``message.reasoning`` and is kept on the step.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from scale_graph.context import PresetName


@dataclass(frozen=True)
class VllmServer:
    """One ``vllm serve`` process."""

    role: str
    """What SCALE uses it for, e.g. 'System 1 + control' or 'System 2'."""
    model: str
    port: int
    reasoning_parser: str | None
    max_model_len: int = 40960
    """The context the reference code ran in (Qwen3's 40,960 tokens); SCALE shrinks budgets to fit it."""

    def command(self, *, tensor_parallel: int = 1, gpu_memory_utilization: float | None = None,
                model: str | None = None, host: str = "127.0.0.1") -> list[str]:
        """The ``vllm serve`` argv."""
        argv = ["vllm", "serve", model or self.model, "--host", host, "--port", str(self.port),
                "--enable-prefix-caching", "--max-model-len", str(self.max_model_len)]
        if self.reasoning_parser:
            argv += ["--reasoning-parser", self.reasoning_parser]
        if tensor_parallel > 1:
            argv += ["--tensor-parallel-size", str(tensor_parallel)]
        if gpu_memory_utilization is not None:
            argv += ["--gpu-memory-utilization", f"{gpu_memory_utilization:g}"]
        return argv

    def base_url(self, host: str = "127.0.0.1") -> str:
        """The endpoint SCALE should call."""
        return f"http://{host}:{self.port}/v1"


@dataclass(frozen=True)
class Recipe:
    """A model setup for SCALE on vLLM."""

    name: str
    summary: str
    preset: PresetName
    system1: VllmServer
    system2: VllmServer | None = None
    """Its own server for System 2 (paired presets); None when one model serves both modes."""
    shares_gpu: bool = False
    """Paired recipes whose two models fit one 80 GB GPU together (each server takes 45% of its memory)."""

    def servers(self) -> list[VllmServer]:
        """The servers to start, System 1's first."""
        return [self.system1] + ([self.system2] if self.system2 else [])

    def scale_args(self, host: str = "127.0.0.1") -> list[str]:
        """The ``scale solve`` / ``scale eval`` flags that use this recipe's servers, with the paper's settings."""
        args = ["--profile", "paper", "--preset", self.preset, "--base-url", self.system1.base_url(host),
                "--model", self.system1.model]
        if self.system2:
            args += ["--system2-base-url", self.system2.base_url(host), "--system2-model", self.system2.model]
        return args


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe(
            name="qwen3-hybrid",
            summary="The paper's main setup: one Qwen3-32B, thinking off for System 1, on for System 2.",
            preset="qwen3-hybrid",
            system1=VllmServer("System 1, System 2 and control", "Qwen/Qwen3-32B", 8000, "qwen3"),
        ),
        Recipe(
            name="qwq-qwen3",
            summary="The paper's paired setup: QwQ-32B thinks (System 2); Qwen3-32B without thinking answers "
            "(System 1) and runs decomposition, selection and assessment.",
            preset="paired",
            system1=VllmServer("System 1 and control", "Qwen/Qwen3-32B", 8000, "qwen3"),
            system2=VllmServer("System 2", "Qwen/QwQ-32B", 8001, "deepseek_r1"),
        ),
        Recipe(
            name="r1-distill",
            summary="A smaller paired setup: DeepSeek-R1-Distill-Qwen-7B thinks (System 2); Qwen3-8B without "
            "thinking answers (System 1) and runs the control stages. Both fit one 80 GB GPU.",
            preset="paired",
            system1=VllmServer("System 1 and control", "Qwen/Qwen3-8B", 8000, "qwen3"),
            system2=VllmServer("System 2", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", 8001, "deepseek_r1"),
            shares_gpu=True,
        ),
    ]
}


def placement(recipe: Recipe, tensor_parallel: int = 1) -> list[tuple[str | None, float | None]]:
    """Per server: the ``CUDA_VISIBLE_DEVICES`` value and ``--gpu-memory-utilization`` to start it with.

    One server: vLLM's defaults. A pair that fits one GPU: both on GPU 0 with 45% each. Otherwise each server gets
    its own ``tensor_parallel`` GPUs (0..tp-1, then tp..2tp-1).
    """
    servers = recipe.servers()
    if len(servers) == 1:
        return [(None, None)]
    if recipe.shares_gpu and tensor_parallel == 1:
        return [("0", 0.45), ("0", 0.45)]
    return [(",".join(str(g) for g in range(i * tensor_parallel, (i + 1) * tensor_parallel)), None)
            for i in range(len(servers))]


def server_commands(recipe: Recipe, *, tensor_parallel: int = 1, host: str = "127.0.0.1") -> list[list[str]]:
    """The argv of each server, with its GPU placement (an ``env`` prefix when it needs one)."""
    commands = []
    for server, (devices, share) in zip(recipe.servers(), placement(recipe, tensor_parallel), strict=True):
        argv = server.command(tensor_parallel=tensor_parallel, gpu_memory_utilization=share, host=host)
        commands.append((["env", f"CUDA_VISIBLE_DEVICES={devices}"] if devices is not None else []) + argv)
    return commands


def render(recipe: Recipe, *, tensor_parallel: int = 1, host: str = "127.0.0.1") -> str:
    """The recipe as text a person can copy: the server command(s), then the SCALE command."""
    lines = [f"# {recipe.name}: {recipe.summary}"]
    for server, argv in zip(recipe.servers(), server_commands(recipe, tensor_parallel=tensor_parallel, host=host),
                            strict=True):
        lines.append(f"# {server.role}:")
        lines.append(shlex.join(argv))
    lines.append("# then:")
    lines.append(shlex.join(["scale", "solve", *recipe.scale_args(host), "What is 17 * 23?"]))
    return "\n".join(lines)

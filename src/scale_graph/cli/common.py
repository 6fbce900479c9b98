"""Options and helpers shared by the sub-commands: endpoint/model options → Context, reading problem text."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from scale_graph.context import PROFILES, Context, profile_overrides
from scale_graph.eval.calibrate import token_costs
from scale_graph.problem import MAX_PROBLEM_CHARS
from scale_graph.settings import InvalidSettings, check_setting, validate_settings

# Context fields settable from the command line: flag → (field, type, help)
_CONTEXT_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--threshold", "threshold", float, "τ: d > τ goes to System 2 (default 0.2; 1 = all System 1, -1 = all "
     "System 2)"),
    ("--candidates", "candidates", int, "k candidate decompositions (default 8)"),
    ("--assess", "assess", str, "difficulty policy: upfront (default), contextual, or agreement (d from how much "
     "System 1 samples disagree)"),
    ("--agreement-samples", "agreement_samples", int, "assess agreement: System 1 samples per sub-problem (default 3)"),
    ("--preset", "preset", str, "auto (default: qwen3-hybrid for a Qwen3 hybrid model, else prompted), prompted, "
     "qwen3-hybrid or paired"),
    ("--final-step", "final_step", str, "question (default, reference code: the last sub-problem is the original "
     "problem, d forced to 0.9) or decomposed (the decomposition's own last sub-problem)"),
    ("--base-url", "base_url", str, "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (default "
     "$SCALE_BASE_URL; none: start the embedded model)"),
    ("--model", "model", str, "model name (default $SCALE_MODEL, else the endpoint's first model)"),
    ("--system2-base-url", "system2_base_url", str, "paired preset: System 2 endpoint"),
    ("--system2-model", "system2_model", str, "paired preset: System 2 model"),
    ("--system1-max-tokens", "system1_max_tokens", int, "System 1 budget (default 512)"),
    ("--system2-max-tokens", "system2_max_tokens", int, "System 2 budget (default 2048)"),
    ("--control-max-tokens", "control_max_tokens", int, "decompose/select/assess budget (default 512)"),
    ("--temperature", "temperature", float, "sampling temperature for every call (default: the preset's)"),
    ("--top-p", "top_p", float, "nucleus top-p for every call (default: the preset's)"),
    ("--top-k", "top_k", int, "top-k for every call (default: the preset's; qwen3-hybrid 20)"),
    ("--max-model-len", "max_model_len", int, "the endpoint's context length (default: learned from the endpoint)"),
    ("--max-subproblems", "max_subproblems", int, "the most sub-problems a decomposition keeps (default 20)"),
    ("--max-tokens-per-problem", "max_tokens_per_problem", int, "budget: stop starting sub-problems once this "
     "many completion tokens are spent (default: no cap)"),
    ("--max-seconds-per-problem", "max_seconds_per_problem", float, "budget: stop starting sub-problems after this "
     "many seconds (default: no cap)"),
    ("--request-timeout", "request_timeout", float, "seconds to wait for one model reply (default 600)"),
    ("--token-budget", "token_budget", int, "route under a budget instead of τ: System 2 goes to the hardest "
     "sub-problems while the expected completion tokens per problem stay within N (default: route by τ)"),
    ("--system1-token-cost", "system1_token_cost", float, "budget routing: expected tokens of a System 1 solve "
     "(default: --system1-max-tokens; blended with the run's own steps)"),
    ("--system2-token-cost", "system2_token_cost", float, "budget routing: expected tokens of a System 2 solve "
     "(default: --system2-max-tokens; blended with the run's own steps)"),
]


def setting_type(dest: str, typ: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type`` for the Context field ``dest``: parse with ``typ``, then check the value as the field.

    So ``--threshold nan`` or ``--candidates 0`` is a usage error (exit 2, naming the flag, the field and the
    reason) before any thread or model exists, in every command that has the flag.
    """

    def parse(text: str) -> Any:
        try:
            value = typ(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {getattr(typ, '__name__', 'value')} value: {text!r}") from None
        try:
            return check_setting(dest, value, Context)
        except InvalidSettings as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = getattr(typ, "__name__", dest)
    return parse


def add_context_options(parser: argparse.ArgumentParser) -> None:
    """Add the run-configuration flags (each maps to a :class:`Context` field, checked as it is parsed)."""
    group = parser.add_argument_group("run configuration")
    for flag, dest, typ, help_text in _CONTEXT_FLAGS:
        kwargs: dict[str, Any] = {"dest": dest, "type": setting_type(dest, typ), "default": None, "help": help_text}
        if dest == "assess":
            kwargs["choices"] = ["upfront", "contextual", "agreement"]
        if dest == "preset":
            kwargs["choices"] = ["auto", "prompted", "qwen3-hybrid", "paired"]
        if dest == "final_step":
            kwargs["choices"] = ["question", "decomposed"]
        group.add_argument(flag, **kwargs)
    group.add_argument("--profile", choices=sorted(PROFILES), default=None,
                       help="a settings profile: 'paper' sets Table 1's settings (k=8, τ=0.2, 32K budgets shrunk to "
                            "fit the context, 8 samples/votes, InftyThink 8 rounds of 6K); explicit flags win")
    group.add_argument("--token-costs", metavar="PATH", default=None,
                       help="budget routing: expected per-mode tokens measured by `scale calibrate` (its "
                            "calibration.jsonl, or a folder holding it); --system1/2-token-cost win")
    group.add_argument("--model-path", default=None,
                       help="serve this local GGUF with the embedded server instead of the default model "
                            "(default $SCALE_MODEL_PATH)")


def context_overrides(args: argparse.Namespace, cls: type[Context] = Context) -> dict[str, Any]:
    """The fields of ``cls`` the user gave flags for, on top of ``--profile``'s (when the command has it), checked.

    A profile's fields that ``cls`` does not have (the baselines' knobs, for SCALE) are left out.
    :class:`~scale_graph.context.InvalidSettings` names a field that cannot be used.
    """
    given = {k: v for k, v in cls.own_fields(vars(args)).items() if v is not None}
    if getattr(args, "token_costs", None):
        given = {**calibrated_costs(args.token_costs), **given}
    chosen = profile_overrides(getattr(args, "profile", None), given)
    return validate_settings(cls.own_fields(chosen), cls)


def calibrated_costs(path: str) -> dict[str, float]:
    """The per-mode token costs of a calibration file; :class:`InvalidSettings` when it cannot be used."""
    try:
        return token_costs(Path(path))
    except (OSError, ValueError) as exc:
        raise InvalidSettings("token_costs", str(exc)) from None


def context_from_args[C: Context](args: argparse.Namespace, cls: type[C]) -> C:
    """A ``cls`` with the flags the user gave; everything else keeps its default (or its environment variable).

    :class:`~scale_graph.context.InvalidSettings` names a field that cannot be used (a flag, or a ``SCALE_*``
    variable that fills one).
    """
    return cls.from_mapping(context_overrides(args, cls))


def add_store_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--checkpointer``: where threads are kept."""
    parser.add_argument("--checkpointer", metavar="TARGET", default=None,
                        help="where threads are kept: a SQLite file or a postgresql:// URL (default "
                             "$SCALE_CHECKPOINTER, else $SCALE_HOME/threads.sqlite, SCALE_HOME defaulting to "
                             "~/.local/share/scale-graph)")


def add_thread_arguments(parser: argparse.ArgumentParser, *, checkpoint: bool = False) -> None:
    """Add THREAD (and ``--checkpoint ID`` for commands that start from one of its checkpoints)."""
    parser.add_argument("thread", help="the thread id (`scale threads` lists them)")
    if checkpoint:
        parser.add_argument("--checkpoint", required=True,
                            help="the checkpoint id, or a unique prefix of it (`scale history THREAD` lists them)")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Add the options of a command that runs SCALE on a thread: output, thread store, run configuration."""
    parser.add_argument("--json", action="store_true", help="print the result as JSON (the output schema)")
    parser.add_argument("--quiet", action="store_true", help="no live progress on stderr")
    add_store_option(parser)
    add_context_options(parser)


class InputError(ValueError):
    """Input that cannot be used; the CLI prints it and exits 2."""


MAX_PROBLEM_BYTES = 4 * MAX_PROBLEM_CHARS
"""The most bytes read from a file or stdin: the longest problem in UTF-8 (4 bytes per character at most)."""


def read_bounded(stream: IO[bytes], where: str, limit: int = MAX_PROBLEM_BYTES) -> bytes:
    """At most ``limit`` bytes of ``stream``; :class:`InputError` when there are more (it reads ``limit + 1``)."""
    raw = stream.read(limit + 1)
    if len(raw) > limit:
        raise InputError(f"{where} is longer than {limit} bytes; a problem is at most {MAX_PROBLEM_CHARS} characters")
    return raw


def read_problem(text: str | None, file: str | None) -> str:
    """The problem from the argument, ``-`` (stdin) or ``--file``, decoded as strict UTF-8.

    A file or stdin is read up to :data:`MAX_PROBLEM_BYTES` plus one byte, never further (``--file /dev/zero``
    is refused at once).
    """
    if file is not None and text is not None:
        raise InputError("give the problem as an argument or with --file, not both")
    if file is not None:
        try:
            with Path(file).open("rb") as stream:
                raw = read_bounded(stream, file)
        except OSError as exc:
            raise InputError(f"cannot read {file}: {exc.strerror}") from exc
        return _decode(raw, file)
    if text is None:
        raise InputError("no problem given: pass it as an argument, '-' for stdin, or --file PATH")
    if text == "-":
        return _decode(read_bounded(sys.stdin.buffer, "standard input"), "standard input")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # undecodable argv bytes arrive as lone surrogates
        raise InputError("the problem is not valid UTF-8") from exc
    return text


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where} is not valid UTF-8 (byte {exc.start})") from exc


def env_flag(name: str) -> bool:
    """True when the environment variable is set to 1/true/yes."""
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes"}

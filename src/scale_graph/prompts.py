"""Every prompt text of the project, in one place, filled with ``str.format``.

The prompts are laid out for prefix caches (vLLM automatic prefix caching, llama.cpp slots): what requests share
comes first, what differs comes last.

- Every SCALE request (decompose, select, assess, solve) starts with the same system prompt and a user turn that
  opens with P (``PROBLEM``); the stage's task follows. Once one request of a problem has been processed, the
  next ones, of whatever stage, find the system prompt and P in the cache.
- The solve prompt (Eq. 5) is a conversation that grows by one exchange per sub-problem: a user turn with P, s_1
  and its mode's instruction; the assistant turn with solution_1 exactly as the model wrote it; a user turn with
  s_2; and so on. Each solve request is the previous request plus the model's own reply plus one short user
  turn, which is exactly what the server's cache already holds, in whichever mode each step runs.
"""

from __future__ import annotations

import hashlib

SCALE_SYSTEM = (
    "You are a careful mathematician. You solve a math problem one sub-problem at a time. End every solution "
    "with the result of the current sub-problem written as \\boxed{...}."
)
"""The one system prompt of every SCALE stage and both modes: a stage- or mode-specific one would break the
shared prefix. It says nothing of JSON: told that, a small model answers its solve turns in JSON too (see
docs/performance.md). The control stages ask for JSON in their own turn, and ``response_format`` enforces it."""

PROBLEM = "Original problem:\n{problem}\n\n"
"""Opens the first user turn of every SCALE request."""

DECOMPOSE_USER = PROBLEM + """Plan a solution of the problem above as a short, ordered list of sub-problems.

- Each sub-problem states one target: what must be found, shown or introduced at that point. Say what, not \
how: name no theorem, formula or technique unless the step cannot be stated without it.
- Solve nothing: give no computed values, intermediate results or the answer.
- Each sub-problem can be reached from the problem and the results of the earlier ones. When the plan needs a \
new quantity, variable or point, the sub-problem that introduces it names it.
- The steps together lead to the answer the problem asks for; the last one asks for that answer.
- Keep each sub-problem brief, and the list no longer than the problem needs.

Reply with JSON of the form {{"subproblems": ["first sub-problem", "second sub-problem", ...]}}."""

SELECT_USER = PROBLEM + """Here are {count} candidate plans for solving the problem above, each a list of \
sub-problems.

{candidates}

Choose the plan most likely to lead to the correct answer. Weigh: logical soundness (each step follows from \
the earlier ones and together they reach the answer); clarity; completeness (no needed step is missing); \
relevance (every step serves the answer); and simplicity (the most direct route, with steps that state targets \
rather than methods). Reply with JSON of the form {{"choice": N}} where N is the number of the best plan \
(1 to {count})."""

ASSESS_USER = PROBLEM + """{earlier}Current sub-problem:
{subproblem}

How difficult is it to solve the current sub-problem correctly, on a scale from 0 to 1? Use 0 to 0.5 for a \
routine step: someone who knows the relevant elementary or middle-school material answers it quickly without \
help (the easier, the lower). Use 0.5 to 1 for a hard step: even a well-prepared high-school or university \
student would need long, careful thought or help, or might not manage it (the harder, the higher). Reply with \
JSON of the form {{"difficulty": D}} with D between 0 and 1."""

EARLIER_SUBPROBLEMS = "Earlier sub-problems:\n{items}\n\n"
EARLIER_SOLVED = "Earlier sub-problems and their solutions:\n{items}\n\n"

# --- solving (Eq. 5): one (user: s_j, assistant: solution_j) exchange per sub-problem, P in the first turn ----

SOLVE_FAST = (
    "Answer the current sub-problem directly and briefly, without long working, in plain text. End with its "
    "result in \\boxed{...}."
)
"""System 1's instruction, placed after the current sub-problem (the end of the prompt)."""

SOLVE_DEEP = (
    "Solve the current sub-problem by reasoning step by step in plain text, checking each step. End with its "
    "result in \\boxed{...}."
)
"""System 2's instruction, placed after the current sub-problem (the end of the prompt)."""

SOLVE_CURRENT = "Current sub-problem {number}: {subproblem}\n\n{instruction}"

SOLVE_CURRENT_LAST = (
    "Current sub-problem {number} (the last one): {subproblem}\n"
    "Its answer is the final answer to the original problem: put that in \\boxed{{...}}.\n\n{instruction}"
)

FINAL_ASK = " Then state the final answer to the original problem."
"""Appended to a decomposition's last sub-problem when it does not ask for the final answer (``final_step=
"decomposed"``; under ``"question"`` the last sub-problem is the original problem itself)."""

# --- baselines -------------------------------------------------------------------------------------------

COT_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
"""Zero-shot chain of thought, the paper's exact prompt (its CoT baseline): the ``cot`` and ``majority``
baselines (System 2 budget and sampling)."""

COT_USER = "{problem}"
"""The CoT user turn: the problem alone, as the paper's baseline sends it."""

INFTY_SYSTEM = (
    "You are a careful mathematician. Reason step by step toward the answer of the problem. When you reach "
    "the final answer, write it as \\boxed{...}."
)
"""InftyThink (training-free): one bounded reasoning round."""

INFTY_FIRST = "Problem:\n{problem}"

INFTY_NEXT = """Problem:
{problem}

Summary of your reasoning so far (round {round} of at most {rounds}):
{summary}

Continue the reasoning from this summary."""

INFTY_SUMMARY_SYSTEM = "You summarize mathematical reasoning so that it can be continued later."

INFTY_SUMMARY_USER = """Problem:
{problem}

{previous}Latest reasoning:
{reasoning}

Summarize the progress so far in a few sentences: the facts and intermediate results established, and what \
remains to be done. Do not solve the rest of the problem."""

INFTY_PREVIOUS = "Summary of the earlier reasoning:\n{summary}\n\n"


def version() -> str:
    """8 hex digits of every prompt text above, part of an evaluation run's identity.

    A run resumed after the prompts changed starts a new results file instead of mixing the two versions.
    """
    texts = sorted((k, v) for k, v in globals().items() if k.isupper() and isinstance(v, str))
    return hashlib.sha256(repr(texts).encode()).hexdigest()[:8]


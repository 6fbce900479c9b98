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
shared prefix. It says nothing of JSON: a small model then answers its solve turns in JSON too (55% of them in
one run). The control stages ask for JSON in their own turn, and ``response_format`` enforces it."""

PROBLEM = "Original problem:\n{problem}\n\n"
"""Opens the first user turn of every SCALE request."""

DECOMPOSE_USER = PROBLEM + """Break the problem above into at most {max_subproblems} ordered sub-problems. \
Each sub-problem is one short question that can be answered using the problem and the answers to the \
earlier sub-problems. The last sub-problem must ask for the final answer to the whole problem.

Reply with JSON of the form {{"subproblems": ["first sub-problem", "second sub-problem", ...]}}."""

SELECT_USER = PROBLEM + """Here are {count} candidate decompositions of the problem above into sub-problems.

{candidates}

Choose the best one by logical correctness, clarity, completeness and relevance. Reply with JSON of the form \
{{"choice": N}} where N is the number of the best candidate (1 to {count})."""

ASSESS_USER = PROBLEM + """{earlier}Current sub-problem:
{subproblem}

Rate how difficult the current sub-problem is to solve correctly, as a number from 0 (trivial: can be answered \
immediately) to 1 (very hard: needs careful multi-step reasoning). Reply with JSON of the form \
{{"difficulty": D}} with D between 0 and 1."""

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
"""Appended to a decomposition's last sub-problem when it does not ask for the final answer."""

# --- baselines -------------------------------------------------------------------------------------------

COT_SYSTEM = (
    "You are a careful mathematician. Solve the problem by reasoning step by step. Put the final answer "
    "in \\boxed{...}."
)
"""Zero-shot chain of thought: the ``cot`` and ``majority`` baselines (System 2 budget)."""

COT_USER = "Problem:\n{problem}"

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


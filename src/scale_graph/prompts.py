"""Every prompt text of the project, in one place, filled with ``str.format``.

The solve prompt is built so consecutive solve calls of one problem share a growing prefix (stable instructions,
then P, then the earlier (s_j, solution_j) pairs in order, then s_i, and only then the mode's instruction):
servers with a prefix cache (vLLM automatic prefix caching, llama.cpp slots) reuse the work for that prefix, in
whichever mode each step runs.
"""

from __future__ import annotations

DECOMPOSE_SYSTEM = (
    "You break math problems into short, ordered sub-problems. Reply with JSON only."
)

DECOMPOSE_USER = """Break the problem below into at most {max_subproblems} ordered sub-problems. \
Each sub-problem is one short question that can be answered using the problem and the answers to the \
earlier sub-problems. The last sub-problem must ask for the final answer to the whole problem.

Reply with JSON of the form {{"subproblems": ["first sub-problem", "second sub-problem", ...]}}.

Problem:
{problem}"""

SELECT_SYSTEM = "You judge problem decompositions. Reply with JSON only."

SELECT_USER = """Here is a math problem and {count} candidate decompositions into sub-problems. \
Choose the best one by logical correctness, clarity, completeness and relevance.

Problem:
{problem}

{candidates}

Reply with JSON of the form {{"choice": N}} where N is the number of the best candidate (1 to {count})."""

ASSESS_SYSTEM = "You rate the difficulty of math sub-problems. Reply with JSON only."

ASSESS_USER = """Rate how difficult the current sub-problem is to solve correctly, as a number from 0 \
(trivial: can be answered immediately) to 1 (very hard: needs careful multi-step reasoning).

Original problem:
{problem}

{earlier}Current sub-problem:
{subproblem}

Reply with JSON of the form {{"difficulty": D}} with D between 0 and 1."""

EARLIER_SUBPROBLEMS = "Earlier sub-problems:\n{items}\n\n"
EARLIER_SOLVED = "Earlier sub-problems and their solutions:\n{items}\n\n"

# --- solving (Eq. 5): stable instructions + P + earlier (s_j, solution_j) + s_i --------------------------------

SOLVE_SYSTEM = (
    "You are a careful mathematician. You solve a math problem one sub-problem at a time. End every reply with "
    "the result of the current sub-problem written as \\boxed{...}."
)
"""The same for both modes: a mode-specific system prompt would break the shared prefix between steps."""

SOLVE_FAST = "Answer the current sub-problem directly and briefly, without long working."
"""System 1's instruction, placed after the current sub-problem (the end of the prompt)."""

SOLVE_DEEP = "Solve the current sub-problem by reasoning step by step, checking each step."
"""System 2's instruction, placed after the current sub-problem (the end of the prompt)."""

SOLVE_PROBLEM = "Original problem:\n{problem}\n"

SOLVE_EARLIER_STEP = "\nSub-problem {number}: {subproblem}\nSolution {number}: {solution}\n"

SOLVE_CURRENT = "\nCurrent sub-problem {number}: {subproblem}\n\n{instruction}\n"

SOLVE_CURRENT_LAST = (
    "\nCurrent sub-problem {number} (the last one): {subproblem}\n"
    "Its answer is the final answer to the original problem: put that in \\boxed{{...}}.\n\n{instruction}\n"
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

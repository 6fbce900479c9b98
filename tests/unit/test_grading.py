"""Grading with math-verify in worker processes: extraction per answer kind, equivalence, timeouts, voting."""

from __future__ import annotations

import time

import pytest

from scale_graph.grading import (
    AnswerGroup,
    GradingPool,
    equivalent,
    extract_boxed,
    grade,
    group_answers,
    last_number,
    majority,
)


@pytest.fixture(scope="module")
def pool():
    with GradingPool(size=1, timeout=30.0) as p:
        yield p


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so \\boxed{\\boxed{3}}", "3"),
        ("first \\boxed{1} then \\boxed{\\frac{a}{b}}", "\\frac{a}{b}"),
        ("\\fbox{x^{2}}", "x^{2}"),
        ("no box at all", None),
        ("unbalanced \\boxed{1", None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("it costs $1,450,000 in total", "1450000"),
        ("18.00 dollars", "18"),
        ("1{,}000", "1000"),
        ("-3 and then 7.5", "7.5"),
        ("nothing numeric", None),
    ],
)
def test_last_number(text, expected):
    assert last_number(text) == expected


@pytest.mark.parametrize(
    ("gold", "response", "kind", "correct", "extracted"),
    [
        # nested boxes: the innermost (last) box is the answer
        ("3", "therefore \\boxed{\\boxed{3}}", "integer", True, "3"),
        # integer kind takes the last number of the box, with units and separators around it
        ("70000", "profit: \\boxed{\\$70{,}000 \\text{ dollars}}", "integer", True, "70000"),
        ("18", "\\boxed{18.0}", "integer", True, "18"),
        ("18", "\\boxed{19}", "integer", False, "19"),
        # \dfrac against a decimal, and fractions in other spellings
        ("\\frac{1}{2}", "\\boxed{0.5}", "latex", True, None),
        ("\\frac{14}{3}", "\\boxed{\\dfrac{14}{3}}", "latex", True, None),
        ("\\frac{14}{3}", "\\boxed{14/3}", "latex", True, None),
        ("\\frac{14}{3}", "\\boxed{\\frac{3}{14}}", "latex", False, None),
        # sets and tuples
        ("\\{1,2\\}", "\\boxed{\\{2, 1\\}}", "latex", True, None),
        ("(3,\\frac{\\pi}{2})", "\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "latex", True, None),
        ("(3,\\frac{\\pi}{2})", "\\boxed{(\\frac{\\pi}{2}, 3)}", "latex", False, None),
        # no box: integer kind falls back to the last number of the text
        ("42", "I think the answer is 42.", "integer", True, "42"),
    ],
)
def test_grade_cases(pool, gold, response, kind, correct, extracted):
    verdict = grade(gold, response, kind, pool=pool)
    assert verdict["status"] == "ok"
    assert verdict["correct"] is correct
    if extracted is not None:
        assert verdict["extracted"] == extracted


def test_no_answer_is_marked_and_wrong(pool):
    verdict = grade("5", "I could not solve it.", "integer", pool=pool)
    assert verdict == {**verdict, "correct": False, "extracted": None, "status": "no_answer"}
    assert grade("5", None, "latex", pool=pool)["status"] == "no_answer"


def test_pathological_input_times_out_instead_of_hanging():
    # 9^(9^(9^9)) makes sympy do big-integer arithmetic in C, which math-verify's own SIGALRM cannot stop.
    with GradingPool(size=1, timeout=2.0) as pool:
        start = time.monotonic()
        verdict = grade("2", "\\boxed{9^{9^{9^{9}}}}", "latex", pool=pool)
        assert time.monotonic() - start < 30
        assert verdict["status"] == "timeout"
        assert verdict["correct"] is False
        # the killed worker is replaced: the next check works
        assert grade("2", "\\boxed{2}", "latex", pool=pool)["correct"] is True


def test_grading_works_off_the_main_thread(pool):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as ex:
        verdicts = list(
            ex.map(
                lambda r: grade("\\frac{1}{2}", r, "latex", pool=pool),
                ["\\boxed{0.5}", "\\boxed{\\frac{2}{4}}", "\\boxed{1}"],
            )
        )
    assert [v["correct"] for v in verdicts] == [True, True, False]


def test_equivalent_forms(pool):
    assert equivalent("\\frac{1}{2}", "0.5", pool=pool)
    assert equivalent("\\dfrac{1}{2}", "\\frac12", pool=pool)
    assert not equivalent("2", "3", pool=pool)
    assert equivalent("yes", " yes ", pool=pool)  # not mathematics: compared as text


def test_majority_vote_groups_equivalent_forms(pool):
    answers = ["3", "\\frac{1}{2}", None, "0.5", "\\dfrac{1}{2}", "3"]
    groups = group_answers(answers, same=lambda a, b: equivalent(a, b, pool=pool))
    assert [(g.answer, g.members) for g in groups] == [("3", [0, 5]), ("\\frac{1}{2}", [1, 3, 4])]
    assert majority(groups) == AnswerGroup("\\frac{1}{2}", [1, 3, 4])


def test_majority_tie_goes_to_the_earliest_sample():
    groups = [AnswerGroup("7", [1, 2]), AnswerGroup("5", [0, 3])]
    assert majority(groups).answer == "5"
    assert majority(list(reversed(groups))).answer == "5"
    assert majority([]) is None

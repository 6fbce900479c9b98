"""Grading with math-verify in worker processes: extraction per answer kind, equivalence, timeouts, voting.

One grading pool serves the whole module (starting a worker imports math-verify, which is slow).
"""

from __future__ import annotations

import time

import pytest

from scale_graph.answers import extract_boxed
from scale_graph.grading import (
    AnswerGroup,
    GradingPool,
    equivalent,
    grade,
    group_answers,
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
        ("\\boxed{\\boxed{3}", "3"),  # an unclosed outer box does not hide the closed inner one
        ("\\boxed{\\\\}", "\\\\"),  # an escaped backslash does not escape the closing brace
        ("\\boxed{a\\\\} b}", "a\\\\"),
        ("\\boxed{\\{1\\}}", "\\{1\\}"),  # escaped braces are not counted
        ("\\boxed{a\\}", None),
        ("\\\\boxed{2}", None),  # a line break followed by the word 'boxed' is no box
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


def test_extract_boxed_is_linear_in_the_number_of_unclosed_boxes():
    # Each unclosed box used to rescan the rest of the text: 16,000 of them took about 75 s.
    text = "\\boxed{" * 20_000
    start = time.monotonic()
    assert extract_boxed(text) is None
    assert extract_boxed(text + "7}") == "7"  # only the innermost (last) box closes
    assert time.monotonic() - start < 2.0


# (gold, model response, answer kind, correct?) as a fair grader should decide. Every case goes through the real
# worker pool: math-verify parses the boxed expression (or, with no box, the text) and compares it with the gold.
TABLE = [
    # fractions: the whole boxed expression is the answer, not its last number
    pytest.param("2", "\\boxed{\\frac{7}{2}}", "integer", False, id="frac-7/2-is-not-2"),
    pytest.param("3.5", "\\boxed{\\frac{7}{2}}", "integer", True, id="frac-7/2-is-3.5"),
    pytest.param("3.5", "\\boxed{\\dfrac{7}{2}}", "integer", True, id="dfrac"),
    pytest.param("\\frac12", "\\boxed{0.5}", "latex", True, id="0.5-is-frac12"),
    pytest.param("\\frac{14}{3}", "\\boxed{\\dfrac{14}{3}}", "latex", True, id="latex-dfrac"),
    pytest.param("\\frac{14}{3}", "\\boxed{14/3}", "latex", True, id="latex-slash-fraction"),
    pytest.param("\\frac{14}{3}", "\\boxed{\\frac{3}{14}}", "latex", False, id="latex-inverted-fraction"),
    pytest.param("\\frac{\\sqrt2}{2}", "\\boxed{\\sqrt{2}/2}", "latex", True, id="sqrt2-over-2"),
    # units and currency around the number
    pytest.param("1625", "\\boxed{1625\\text{ cm}^2}", "integer", True, id="units-cm^2"),
    pytest.param("18", "\\boxed{18 \\text{ apples}}", "integer", True, id="units-text"),
    pytest.param("18", "\\boxed{\\$18}", "integer", True, id="currency"),
    pytest.param("70000", "profit: \\boxed{\\$70{,}000 \\text{ dollars}}", "integer", True, id="currency-separator"),
    # degrees
    pytest.param("90", "\\boxed{90^\\circ}", "integer", True, id="degrees-circ"),
    pytest.param("90", "\\boxed{90^{\\circ}}", "integer", True, id="degrees-braced-circ"),
    pytest.param("90", "\\boxed{90°}", "integer", True, id="degrees-sign"),  # rewritten: math-verify can't parse °
    # thousands separators
    pytest.param("1000", "\\boxed{1{,}000}", "integer", True, id="thousands-braced-comma"),
    pytest.param("1000", "\\boxed{1,000}", "integer", True, id="thousands-comma"),
    pytest.param("1000000", "\\boxed{1,000,000}", "integer", True, id="millions-comma"),
    pytest.param("1000", "\\boxed{1\\,000}", "integer", True, id="thousands-thin-space"),  # rewritten: read as 1*0
    pytest.param("0", "\\boxed{1\\,000}", "integer", False, id="thin-space-is-not-zero"),
    # leading zeros (AIME answers are 000-999 and models write them with three digits)
    pytest.param("33", "\\boxed{033}", "integer", True, id="leading-zero"),
    pytest.param("5", "\\boxed{005}", "integer", True, id="leading-zeros"),
    pytest.param("0", "\\boxed{000}", "integer", True, id="all-zeros"),
    # signs and decimals
    pytest.param("-5", "\\boxed{-5}", "integer", True, id="negative"),
    pytest.param("5", "\\boxed{-5}", "integer", False, id="sign-matters"),
    pytest.param("18", "\\boxed{18.00}", "integer", True, id="decimal-zeros"),
    pytest.param("18", "\\boxed{18.5}", "integer", False, id="decimal-not-integer"),
    pytest.param("12", "so the answer is \\boxed{12.}", "integer", True, id="full-stop-in-box"),  # rewritten
    # equations and expressions
    pytest.param("3", "\\boxed{x = 3}", "integer", True, id="equation"),
    pytest.param("4", "\\boxed{x = 3}", "integer", False, id="equation-wrong"),
    pytest.param("12", "\\boxed{3 \\cdot 4 = 12}", "integer", True, id="equation-chain"),
    pytest.param("1024", "\\boxed{2^{10}}", "integer", True, id="power"),
    pytest.param("50", "\\boxed{50\\%}", "integer", True, id="percent"),
    # digits shared with the gold are not enough
    pytest.param("1234", "\\boxed{123}", "integer", False, id="prefix-of-gold"),
    pytest.param("123", "\\boxed{1234}", "integer", False, id="gold-is-prefix"),
    pytest.param("18", "\\boxed{19}", "integer", False, id="plain-wrong"),
    # where the answer is: the last box, the inner of nested boxes, text around a box, no box
    pytest.param("5", "\\boxed{3}, no wait: \\boxed{5}", "integer", True, id="last-box-counts"),
    pytest.param("3", "\\boxed{3}, no wait: \\boxed{5}", "integer", False, id="earlier-box-does-not"),
    pytest.param("3", "therefore \\boxed{\\boxed{3}}", "integer", True, id="nested-boxes"),
    pytest.param("42", "The answer is $\\boxed{42}$ dollars.", "integer", True, id="text-around-box"),
    pytest.param("12", "\\boxed{12 \\text{ and } 13}", "integer", False, id="two-answers-in-box"),
    pytest.param("42", "I think the answer is 42.", "integer", True, id="no-box"),
    pytest.param("42", "The answer is 42. I checked 7 cases.", "integer", True, id="no-box-answer-then-numbers"),
    pytest.param("5", "The answer is 5, so \\boxed{}", "integer", False, id="empty-box"),
    # sets and tuples
    pytest.param("\\{1,2\\}", "\\boxed{\\{2, 1\\}}", "latex", True, id="set-order"),
    pytest.param("(3,\\frac{\\pi}{2})", "\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "latex", True, id="tuple"),
    pytest.param("(3,\\frac{\\pi}{2})", "\\boxed{(\\frac{\\pi}{2}, 3)}", "latex", False, id="tuple-order"),
]


@pytest.mark.parametrize(("gold", "response", "kind", "correct"), TABLE)
def test_grade_table(pool, gold, response, kind, correct):
    verdict = grade(gold, response, kind, pool=pool)
    assert verdict["status"] == ("ok" if verdict["extracted"] is not None else "no_answer")
    assert verdict["correct"] is correct


@pytest.mark.parametrize(
    ("response", "extracted"),
    [
        ("\\boxed{1625\\text{ cm}^2}", "1625"),
        ("\\boxed{\\frac{7}{2}}", "\\frac{7}{2}"),
        ("\\boxed{033}", "033"),
        ("\\boxed{x = 3}", "x = 3"),
        ("\\boxed{1\\,000}", "1000"),
        ("I think the answer is 42.", "42"),
    ],
)
def test_extracted_is_what_math_verify_read(pool, response, extracted):
    assert grade("1", response, "integer", pool=pool)["extracted"] == extracted


def test_no_answer_is_marked_and_wrong(pool):
    verdict = grade("5", "I could not solve it.", "integer", pool=pool)
    assert verdict == {**verdict, "correct": False, "extracted": None, "status": "no_answer"}
    assert grade("5", None, "latex", pool=pool)["status"] == "no_answer"
    assert grade("5", "The answer is 5, so \\boxed{}", "integer", pool=pool)["status"] == "no_answer"


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

"""Data sets: the shipped ones load with the right answer kind; bad files fail naming the line."""

from __future__ import annotations

import json

import pytest

from scale_graph.eval.datasets import BUILTIN, DatasetError, load_dataset


@pytest.mark.parametrize(
    ("name", "rows", "kind"),
    [
        ("aime24", 30, "integer"),
        ("aime25", 30, "integer"),
        ("amc23", 40, "integer"),
        ("math500", 500, "latex"),
        ("gsm8k_dev", 300, "integer"),
    ],
)
def test_builtin_sets_ship_with_the_package(name, rows, kind):
    dataset = load_dataset(name)
    assert (dataset.name, len(dataset.problems), dataset.kind) == (name, rows, kind)
    assert len({p.id for p in dataset.problems}) == rows
    assert all(p.problem and p.answer for p in dataset.problems)


def test_gsm8k_first_rows_match_the_provenance_notes():
    answers = [p.answer for p in load_dataset("gsm8k_dev").problems[:3]]
    assert answers == ["18", "3", "70000"]
    assert set(BUILTIN) == {"aime24", "aime25", "amc23", "math500", "gsm8k_dev"}


def test_a_jsonl_path_with_integer_answers_is_graded_as_integers(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(
        "\n".join(json.dumps({"id": f"q{i}", "problem": f"{i}+1?", "answer": str(i + 1)}) for i in range(3))
        + "\n\n"
    )
    dataset = load_dataset(str(path))
    assert (dataset.name, dataset.kind, len(dataset.problems)) == ("mine", "integer", 3)
    path.write_text(json.dumps({"id": "a", "problem": "p", "answer": "\\frac{1}{2}"}) + "\n")
    assert load_dataset(str(path)).kind == "latex"


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"id": "a", "problem": "p", "answer": "1"}', "{not json"], ":2: not valid JSON"),
        (['{"id": "a", "problem": "p"}'], ":1: field 'answer' must be a non-empty string"),
        (['{"id": "a", "problem": "", "answer": "1"}'], ":1: field 'problem'"),
        (["[1, 2]"], ":1: expected a JSON object"),
        (
            ['{"id": "a", "problem": "p", "answer": "1"}', '{"id": "a", "problem": "q", "answer": "2"}'],
            ":2: id 'a' already used on line 1",
        ),
        ([], "no problems"),
    ],
)
def test_malformed_rows_name_the_line(tmp_path, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=message.replace("[", r"\[")):
        load_dataset(str(path))


def test_unknown_name(tmp_path):
    with pytest.raises(DatasetError, match="unknown data set 'gsm9k'"):
        load_dataset("gsm9k")

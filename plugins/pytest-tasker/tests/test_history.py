"""assert_legal_history accepts legal paths and names every way an illegal one breaks."""

from __future__ import annotations

import pytest
from tasker_core import Transition

from pytest_tasker import assert_legal_history, history_problems


def t(step: str | None, a: str, b: str, key: int, recent: bool) -> Transition:
    return Transition("t1", step, a, b, "e", "", {}, float(key), key, recent)


def test_a_legal_history_passes() -> None:
    log = [
        t(None, "pending", "in_progress", 1, True),
        t("s", "pending", "enqueued", 2, False),
        t("s", "enqueued", "in_progress", 3, False),
        t("s", "in_progress", "complete", 4, True),
    ]
    assert_legal_history(log, {None: "in_progress", "s": "complete", "other": "pending"})


@pytest.mark.parametrize(
    ("log", "finals", "phrase"),
    [
        ([t("s", "pending", "complete", 1, True)], {"s": "complete"}, "illegal move"),
        ([t("s", "enqueued", "in_progress", 1, True)], {"s": "in_progress"}, "starts from"),
        ([t("s", "pending", "enqueued", 1, True)], {"s": "pending"}, "ends in 'enqueued'"),
        (
            [t("s", "pending", "enqueued", 1, True), t("s", "enqueued", "cancelled", 2, True)],
            {"s": "cancelled"},
            "most_recent flags",
        ),
        (
            [t("s", "pending", "enqueued", 1, True), t(None, "pending", "cancelled", 1, True)],
            {"s": "enqueued", None: "cancelled"},
            "not unique",
        ),
        ([t("x", "pending", "enqueued", 1, True)], {}, "unknown step 'x'"),
    ],
)
def test_illegal_histories_are_named(
    log: list[Transition], finals: dict[str | None, str], phrase: str
) -> None:
    assert any(phrase in p for p in history_problems(log, finals))
    with pytest.raises(AssertionError, match="illegal transition history"):
        assert_legal_history(log, finals)

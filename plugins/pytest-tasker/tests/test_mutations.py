"""The kit catches real bugs: deliberately broken backends fail it, with readable messages.

One pytest process runs the suites against every backend in ``mutants/broken_backends.py``
(derandomized, so the outcome is reproducible); each test below then checks that one broken
backend failed the tests that should catch its bug, saying what went wrong, and that the healthy
controls in the same run passed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

MUTANTS = Path(__file__).parent / "mutants" / "broken_backends.py"

CONFTEST = """
from hypothesis import Phase, settings

# No shrinking: the failure (and its message) is what is checked, not the minimal example.
settings.register_profile(
    "mutants",
    max_examples=100,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
)
settings.load_profile("mutants")
"""

Outcomes = dict[str, dict[str, str | None]]
"""class name -> test name -> failure text (None when it passed, "skipped" when skipped)."""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Outcomes:
    work = tmp_path_factory.mktemp("mutants")
    shutil.copy(MUTANTS, work / "test_broken_backends.py")
    (work / "conftest.py").write_text(CONFTEST)
    (work / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    report = work / "report.xml"
    env = {k: v for k, v in os.environ.items() if k != "HYPOTHESIS_PROFILE"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            f"--junitxml={report}",
            str(work / "test_broken_backends.py"),
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert report.exists(), f"the mutant run produced no report:\n{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 1, f"the mutant run must fail (exit 1):\n{proc.stdout[-3000:]}"
    found: Outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        cls = case.get("classname", "").rsplit(".", 1)[-1]
        name = case.get("name", "")
        failure = case.find("failure")
        error = case.find("error")
        skipped = case.find("skipped")
        text: str | None = None
        if failure is not None or error is not None:
            node = failure if failure is not None else error
            assert node is not None
            text = (node.get("message") or "") + "\n" + (node.text or "")
        elif skipped is not None:
            text = "skipped"
        found.setdefault(cls, {})[name] = text
    return found


def failures(outcomes: Outcomes, cls: str) -> dict[str, str]:
    return {
        name: text for name, text in outcomes[cls].items() if text is not None and text != "skipped"
    }


def assert_caught(outcomes: Outcomes, cls: str, expected: dict[str, str]) -> None:
    """Each named test of ``cls`` failed, and its report contains the given phrase."""
    failed = failures(outcomes, cls)
    for test, phrase in expected.items():
        assert test in failed, f"{cls}.{test} did not fail; failed: {sorted(failed)}"
        assert phrase in failed[test], f"{cls}.{test} failed without {phrase!r}:\n{failed[test]}"


def test_healthy_controls_pass(outcomes: Outcomes) -> None:
    for cls in ("TestHealthyQueue", "TestHealthyStore"):
        assert failures(outcomes, cls) == {}, f"{cls} failed: {failures(outcomes, cls)}"
        assert len(outcomes[cls]) > 10


def test_store_allowing_an_illegal_transition_fails(outcomes: Outcomes) -> None:
    assert_caught(
        outcomes,
        "TestIllegalTransitionStore",
        {
            "test_state_machine_against_model": "accepted an illegal change",
            "test_illegal_transition_error_names_the_states": "DID NOT RAISE",
            "test_a_bad_change_rejects_the_whole_batch[illegal-step]": "DID NOT RAISE",
        },
    )


def test_store_losing_a_result_fails(outcomes: Outcomes) -> None:
    assert_caught(
        outcomes,
        "TestLosingResultsStore",
        {
            "test_state_machine_against_model": "results",
            "test_complete_stores_results_and_clears_lease_and_error": (
                "the step's results were not stored as given"
            ),
        },
    )


def test_store_whose_compare_and_set_double_claims_fails(outcomes: Outcomes) -> None:
    assert_caught(
        outcomes,
        "TestDoubleClaimStore",
        {
            "test_state_machine_against_model": "compare-and-set must let exactly one win",
            "test_racing_workers_claim_each_step_once": "exactly one racing worker",
        },
    )


def test_queue_losing_a_nack_fails(outcomes: Outcomes) -> None:
    assert_caught(
        outcomes,
        "TestLostNackQueue",
        {
            "test_state_machine_against_model": "len(queue) is",
            "test_nack_makes_the_item_visible_after_the_delay": "a nacked item was lost",
        },
    )


def test_queue_double_claiming_fails(outcomes: Outcomes) -> None:
    assert_caught(
        outcomes,
        "TestDoubleClaimQueue",
        {
            "test_state_machine_against_model": "double claim",
            "test_enqueue_claim_ack": "a claimed item was handed out again",
            "test_concurrent_claimers_never_share_an_item": "claimed by two live claims",
        },
    )


def test_sink_dropping_events_fails(outcomes: Outcomes) -> None:
    assert_caught(
        outcomes,
        "TestDroppingSink",
        {
            "test_accepts_every_catalogue_event_in_one_batch": "the sink holds",
            "test_delivers_everything_once_in_order": "the sink holds",
        },
    )


def test_finder_ordering_versions_as_strings_fails(outcomes: Outcomes) -> None:
    assert_caught(
        outcomes,
        "TestStringOrderFinder",
        {
            "test_latest_is_the_highest_version_not_the_last_string": "1.10.0",
            "test_random_lookups_agree_with_the_catalogue": "expected kit/billing@1.10.0",
        },
    )

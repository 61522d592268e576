"""The layers of tests/conftest.py, on made-up test modules run by pytest in-process: each test is counted in
one layer, a test of the session's trained model is an integration test whatever its module says, collection
fails on a test without a layer, and the count per layer comes just above pytest's own closing line (which CI
reads)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

CONFTEST = Path(__file__).with_name("conftest.py")
# the session fixtures by name, without preparing or training anything
FAKE_SESSION = """
@pytest.fixture
def tiny_model_dir(tmp_path):
    return tmp_path

@pytest.fixture
def prepared_sample(tmp_path):
    return tmp_path
"""


@pytest.fixture
def made(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST.read_text(encoding="utf-8"))
    pytester.makeini(
        "[pytest]\naddopts = --strict-markers -p no:cacheprovider\nmarkers =\n unit\n integration\n system\n"
    )
    return pytester


def test_each_test_is_counted_in_one_layer_and_pytests_own_line_stays_last(made: pytest.Pytester) -> None:
    made.makepyfile(
        test_mostly_unit="import pytest\npytestmark = pytest.mark.unit\n"
        + FAKE_SESSION
        + """
def test_alone():
    pass

def test_of_the_trained_model(tiny_model_dir):
    pass

@pytest.mark.system
def test_of_the_command():
    pass
""",
        test_together="import pytest\npytestmark = pytest.mark.integration\ndef test_together():\n    pass\n",
    )
    result = made.runpytest_inprocess("-q")
    result.assert_outcomes(passed=4)
    lines = [line for line in result.outlines if line.strip()]
    assert lines[-2] == "passed per layer: 1 unit, 2 integration, 1 system"
    assert re.fullmatch(r"4 passed in [\d.]+s", lines[-1])
    # `-m` sees the layer each test ends with: the trained-model test of a unit module is not a unit test
    made.runpytest_inprocess("-q", "-m", "unit").assert_outcomes(passed=1, deselected=3)
    made.runpytest_inprocess("-q", "-m", "integration").assert_outcomes(passed=2, deselected=2)


@pytest.mark.parametrize(
    ("module", "says"),
    [
        ("def test_somewhere():\n    pass\n", "test_somewhere: no layer; add `pytestmark = pytest.mark.unit`"),
        (
            "@pytest.mark.unit\n@pytest.mark.system\ndef test_both():\n    pass\n",
            "test_both: two layers (system, unit); a test is in one",
        ),
        (
            "pytestmark = pytest.mark.integration\n"
            + FAKE_SESSION
            + "@pytest.mark.unit\ndef test_claims_unit(prepared_sample):\n    pass\n",
            "test_claims_unit: marked unit, but it uses prepared_sample",
        ),
    ],
    ids=["none", "two", "below its fixtures"],
)
def test_collection_fails_on_a_test_whose_layer_is_not_one(made: pytest.Pytester, module: str, says: str) -> None:
    made.makepyfile(test_made="import pytest\n" + module + "\ndef test_fine():\n    pass\n")
    result = made.runpytest_inprocess("-q", "-m", "unit or integration or system")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert says in result.stderr.str()
    result.assert_outcomes()  # nothing ran

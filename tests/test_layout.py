"""nmt.layout: checkpoint names sort as their steps and are found by the pattern that reads them back, and
reading prepare.json gives one clear line for each way it can be missing or damaged."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nmt.errors import DataError
from nmt.layout import CHECKPOINT_NAME, PREPARE_JSON, checkpoint_name, load_summary, spm_model_names

pytestmark = pytest.mark.unit


def test_checkpoint_names_sort_as_their_steps_and_read_back():
    steps = [0, 7, 40, 400, 999_999]
    names = [checkpoint_name(step) for step in steps]
    assert sorted(names) == names
    assert [int(CHECKPOINT_NAME.fullmatch(name).group(1)) for name in names] == steps


def test_spm_names_joint_or_one_per_language():
    assert spm_model_names("en", "fr", joint=True) == {"src": "spm.model", "tgt": "spm.model"}
    assert spm_model_names("en", "fr", joint=False) == {"src": "spm.en.model", "tgt": "spm.fr.model"}


def test_load_summary_reads_a_prepared_directory(prepared_sample):
    summary = load_summary(prepared_sample)
    assert summary["settings"]["src"] == "en" and summary["vocab_size"]["src"] > 0


@pytest.mark.parametrize(
    ("content", "says"),
    [(None, "not a prepared data directory"), ("{", "invalid JSON"), ("[]", "not a JSON object")],
)
def test_load_summary_errors_are_one_line(tmp_path, content, says):
    if content is not None:
        (tmp_path / PREPARE_JSON).write_text(content)
    with pytest.raises(DataError) as caught:
        load_summary(tmp_path)
    message = str(caught.value)
    assert says in message and "nmt prepare" in message and "\n" not in message


def test_the_leaves_import_only_the_standard_library():
    code = (
        "import sys; before = set(sys.modules); import nmt.layout, nmt.fileio, nmt.version; "
        "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] not in sys.stdlib_module_names))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(sorted(["nmt", "nmt.errors", "nmt.fileio", "nmt.layout", "nmt.version"]))

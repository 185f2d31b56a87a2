"""Every committed run keeps its id: ``run_id`` recomputed from each stored config under
results/ equals the record's ``run_id`` and its folder's name (a study started before a change
must resume after it)."""

import json
from pathlib import Path

import pytest

from qrnn.study.config import config_from_dict
from qrnn.study.train import run_id

RESULTS = Path(__file__).resolve().parent.parent / "results"
RECORDS = sorted(RESULTS.glob("**/run.json"))


def test_there_are_committed_records():
    assert len(RECORDS) > 10


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: str(p.parent.relative_to(RESULTS)))
def test_run_id_of_committed_record(path):
    rec = json.loads(path.read_text())
    rid = run_id(config_from_dict(rec["config"]))
    assert rid == rec["run_id"] == path.parent.name

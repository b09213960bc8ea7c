"""`visionflow review` and `visionflow labels`: the commands as a person runs them."""

from __future__ import annotations

import hashlib
import json
import subprocess

import numpy as np

from visionflow.home import resolve_home

from tests.conftest import VISIONFLOW
from tests.review_helpers import scored_drop


def run(*arguments: str, home) -> subprocess.CompletedProcess:
    command = [*VISIONFLOW, *arguments, "--home", str(home)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def last_json(result: subprocess.CompletedProcess) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_review_then_label_then_list(tmp_path):
    home = tmp_path / "home"
    probabilities = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.34, 0.33, 0.33], [0.6, 0.3, 0.1]], np.float32)
    _, paths = scored_drop(resolve_home(home), tmp_path / "drop", probabilities)
    chosen = run("review", "--drop", str(tmp_path / "drop"), "--count", "2", "--random", "1", "--json", home=home)
    review = last_json(chosen)
    assert chosen.returncode == 0, chosen.stderr
    assert [item["drop_path"] for item in review["items"][:2]] == ["image-002.png", "image-001.png"]
    assert review["review_id"] and [item["reason"] for item in review["items"]] == ["least-sure"] * 2 + ["random"]
    human = run("review", "--drop", "drop", "--count", "1", "--random", "0", home=home)
    assert "1 least-sure and 0 random" in human.stdout and "image-002.png" in human.stdout

    labels = tmp_path / "labels.csv"
    rows = ["sha256,label", *(f"{item['sha256']},red" for item in review["items"][:2]), f"{'0' * 64},red",
            ",green", f"{review['items'][2]['sha256']},purple"]  # fmt: skip
    labels.write_text("\n".join(rows) + "\n")
    imported = run("labels", "import", str(labels), "--json", home=home)
    report = last_json(imported)
    assert imported.returncode == 4  # Some rows were rejected; the others are stored.
    assert report["accepted"] == 2 and [r["origin"] for r in report["rejected"]] == ["row 5", "row 4", "row 6"]
    again = run("labels", "import", str(labels), home=home)
    assert "0 labels stored, 2 stored before" in again.stdout and "rejected row 6: class 'purple'" in again.stdout

    by_path = tmp_path / "by-path.csv"
    by_path.write_text(f"path,label,reviewer\n{paths[2].name},green,ana\n")
    (tmp_path / paths[2].name).write_bytes(paths[2].read_bytes())  # Relative paths are read beside the CSV.
    assert run("labels", "import", str(by_path), home=home).returncode == 0
    listing = last_json(run("labels", "list", "--conflicts", "--json", home=home))
    digest = hashlib.sha256(paths[2].read_bytes()).hexdigest()
    assert listing["conflicting"] == [digest] and listing["snapshot"]["count"] == 1
    assert {label["class_name"] for label in listing["labels"]} == {"red", "green"}
    assert "CONFLICT" in run("labels", "list", home=home).stdout
    resolved = last_json(run("labels", "resolve", digest[:12], "green", "--reviewer", "cy", "--json", home=home))
    assert resolved["conflicting"] == [] and resolved["snapshot"]["count"] == 2
    assert [label["source"] for label in resolved["labels"]].count("resolution") == 1
    unknown = run("labels", "resolve", "0" * 64, "green", "--reviewer", "cy", home=home)
    assert unknown.returncode == 4 and "no label matches" in unknown.stderr


def test_bad_input_is_one_line_with_its_exit_code(tmp_path):
    home = tmp_path / "home"
    unscored = run("review", "--drop", str(tmp_path), home=home)
    assert unscored.returncode == 4 and unscored.stderr.strip().count("\n") == 0
    assert "score it first" in unscored.stderr
    wrong_header = tmp_path / "labels.csv"
    wrong_header.write_text("file,class\na.png,red\n")
    scored_drop(resolve_home(home), tmp_path / "drop", np.full((2, 3), 1 / 3, np.float32))
    refused = run("labels", "import", str(wrong_header), "--json", home=home)
    assert refused.returncode == 4 and "needs a header with `label`" in last_json(refused)["error"]
    bad_option = run("review", "--drop", "drop", "--count", "-1", home=home)
    assert bad_option.returncode == 2 and "count" in bad_option.stderr


def test_review_exports_label_studio_tasks_that_import_back(tmp_path):
    home = tmp_path / "home"
    scored_drop(resolve_home(home), tmp_path / "drop", np.full((3, 3), 1 / 3, np.float32))
    tasks = tmp_path / "tasks.json"
    review = last_json(run("review", "--drop", "drop", "--count", "2", "--random", "0", "--export", "label-studio",
                           str(tasks), "--document-root", str(tmp_path), "--json", home=home))  # fmt: skip
    written = json.loads(tasks.read_text())
    assert [task["data"]["sha256"] for task in written] == [item["sha256"] for item in review["items"]]
    assert written[0]["data"]["image"].startswith("/data/local-files/?d=drop")
    assert '<Choice value="green"' in tasks.with_suffix(".label-config.xml").read_text()
    for task in written:  # Answered as a labeller would: the export carries the task and its annotation.
        task["annotations"] = [{"completed_by": 1, "was_cancelled": False,
                                "result": [{"type": "choices", "value": {"choices": ["green"]}}]}]  # fmt: skip
    tasks.write_text(json.dumps(written))
    imported = last_json(run("labels", "import", str(tasks), "--json", home=home))
    assert imported["accepted"] == 2 and imported["rejected"] == []
    wrong = run("review", "--drop", "drop", "--export", "csv", str(tasks), home=home)
    assert wrong.returncode == 2 and "label-studio" in wrong.stderr

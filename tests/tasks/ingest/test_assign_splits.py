"""Stage 3: deterministic, stratified, content-hash splits, labels and the contract columns."""

from __future__ import annotations

import pandas as pd
import pytest

from visionflow.errors import BadInputError
from visionflow.tasks.ingest.assign_splits import (
    SplitConfig,
    assign_splits,
    assign_splits_task,
    dataset_fingerprint,
    relabel,
)
from visionflow.tasks.ingest.decode_images import DecodeConfig, decode_dataset
from visionflow.tasks.ingest.scan_files import ScanConfig, scan_dataset


def manifest_rows(rows: list[tuple[str, str, str | None, str]]) -> pd.DataFrame:
    """A decoded manifest from (path, class, source split, sha256) tuples, every row usable."""
    frame = pd.DataFrame(rows, columns=["path", "class_name", "source_split", "sha256"])
    frame["status"] = "ok"
    frame["reason"] = None
    return frame


def flat(count_per_class: dict[str, int]) -> pd.DataFrame:
    rows = []
    for class_name, count in count_per_class.items():
        rows += [(f"{class_name}/{i}.png", class_name, None, f"{class_name}-{i:04d}") for i in range(count)]
    return manifest_rows(rows)


def test_flat_sources_are_carved_per_class_in_the_configured_shares():
    assigned, classes = assign_splits(flat({"cat": 100, "dog": 50}), SplitConfig(val_fraction=0.1, test_fraction=0.2))
    assert classes == ["cat", "dog"]
    counts = assigned.groupby(["class_name", "split"]).size()
    assert counts[("cat", "test")] == 20 and counts[("cat", "val")] == 10 and counts[("cat", "train")] == 70
    assert counts[("dog", "test")] == 10 and counts[("dog", "val")] == 5 and counts[("dog", "train")] == 35
    assert assigned.loc[assigned["class_name"] == "dog", "label"].eq(1).all()


def test_splits_are_deterministic_and_change_only_with_the_salt():
    frame = flat({"cat": 40, "dog": 40})
    first, _ = assign_splits(frame, SplitConfig())
    second, _ = assign_splits(frame.sample(frac=1, random_state=3), SplitConfig())
    pd.testing.assert_series_equal(
        first.set_index("path")["split"], second.set_index("path").loc[first["path"], "split"]
    )
    salted, _ = assign_splits(frame, SplitConfig(salt="another"))
    assert (salted["split"] != first["split"]).any()


def test_a_given_test_split_is_kept_and_val_is_carved_from_train_only():
    rows = [(f"train/cat/{i}.png", "cat", "train", f"t{i}") for i in range(50)]
    rows += [(f"test/cat/{i}.png", "cat", "test", f"s{i}") for i in range(10)]
    rows += [(f"train/dog/{i}.png", "dog", "train", f"d{i}") for i in range(50)]
    assigned, _ = assign_splits(manifest_rows(rows), SplitConfig(val_fraction=0.2))
    assert (assigned.loc[assigned["source_split"] == "test", "split"] == "test").all()
    train_rows = assigned[(assigned["source_split"] == "train") & (assigned["class_name"] == "cat")]
    assert (train_rows["split"] == "val").sum() == 10 and (train_rows["split"] == "train").sum() == 40


def test_copies_of_one_image_stay_together_and_leakage_is_flagged():
    rows = [(f"cat/{i}.png", "cat", None, f"c{i}") for i in range(30)] + [("cat/copy.png", "cat", None, "c0")]
    rows += [(f"dog/{i}.png", "dog", None, f"d{i}") for i in range(30)]
    assigned, _ = assign_splits(manifest_rows(rows), SplitConfig())
    copies = assigned[assigned["sha256"] == "c0"]
    assert copies["split"].nunique() == 1 and copies["duplicate_in_split"].all()
    assert not assigned["in_other_split"].any()

    leaked = [(f"train/cat/{i}.png", "cat", "train", f"t{i}") for i in range(20)]
    leaked += [(f"train/dog/{i}.png", "dog", "train", f"d{i}") for i in range(20)]
    leaked += [("test/cat/0.png", "cat", "test", "t3"), ("test/cat/1.png", "cat", "test", "fresh")]
    assigned, _ = assign_splits(manifest_rows(leaked), SplitConfig())
    flagged = set(assigned.loc[assigned["in_other_split"].fillna(False), "path"])
    assert flagged == {"train/cat/3.png", "test/cat/0.png"}


def test_class_counts_balance_and_unknown_classes():
    rows = [(f"train/cat/{i}.png", "cat", "train", f"c{i}") for i in range(20)]
    rows += [(f"train/dog/{i}.png", "dog", "train", f"d{i}") for i in range(5)]
    rows += [("test/cat/0.png", "cat", "test", "x"), ("test/fox/0.png", "fox", "test", "y")]
    frame = manifest_rows(rows)
    frame.loc[len(frame)] = ["train/cat/bad.png", "cat", "train", None, "quarantined", "corrupt"]
    assigned, classes = assign_splits(frame, SplitConfig(val_fraction=0.0))
    assert classes == ["cat", "dog"], "classes come from the train split"
    by_path = assigned.set_index("path")
    assert by_path.at["train/dog/0.png", "class_count"] == 5
    assert by_path.at["train/dog/0.png", "class_balance"] == 0.25
    assert pd.isna(by_path.at["test/fox/0.png", "label"])
    assert pd.isna(by_path.at["train/cat/bad.png", "split"]) and pd.isna(by_path.at["train/cat/bad.png", "label"])


def test_task_writes_the_manifest_next_to_the_dataset(make_image_folder, tmp_path):
    root = make_image_folder(layout="split", per_class=6, test_per_class=2)
    manifest = scan_dataset(root, ScanConfig(workers=1))
    decode_dataset(manifest, root, DecodeConfig(channels=3, workers=1), tmp_path / "decoded")
    result = assign_splits_task.fn(manifest, str(tmp_path / "decoded"), SplitConfig(), tmp_path / "datasets", "images")
    assert result.dataset_dir.name == f"images-{result.fingerprint[:12]}"
    assert result.fingerprint == dataset_fingerprint(tmp_path / "decoded", manifest, SplitConfig())
    assert len(pd.read_parquet(result.dataset_dir / "manifest.parquet")) == len(manifest)
    assert result.classes == ["blue", "green", "red"]


def test_every_split_names_the_training_classes_it_lacks():
    rows = [(f"train/{name}/{i}.png", name, "train", f"{name}{i}") for name in ("cat", "fox") for i in range(10)]
    rows += [("test/cat/0.png", "cat", "test", "x")]
    assigned, _ = assign_splits(manifest_rows(rows), SplitConfig(val_fraction=0.0))
    by_split = assigned.groupby("split")["classes_missing_from_split"].first().to_dict()
    assert by_split == {"test": "fox", "train": ""}


def test_fewer_than_two_classes_is_refused_with_advice():
    with pytest.raises(
        BadInputError, match="a dataset needs at least two classes with usable images, found only 'cat'"
    ):
        assign_splits(flat({"cat": 30}), SplitConfig())


def test_files_none_of_which_is_an_image_are_refused_saying_so():
    frame = flat({"cat": 3, "dog": 2}).assign(status="quarantined", reason="not an image: cannot identify image file")
    expected = r"none of the 5 files is a usable image \(e.g. cat/0.png: not an image: cannot identify image file\)"
    with pytest.raises(BadInputError, match=expected):
        assign_splits(frame, SplitConfig())


def test_fractions_that_leave_no_training_data_are_refused():
    with pytest.raises(ValueError, match="nothing is left to train on"):
        SplitConfig(val_fraction=0.5, test_fraction=0.6)


def test_a_cached_decode_takes_this_scans_labels():
    decoded = flat({"cat": 3, "dog": 3})
    rescanned = decoded.assign(class_name=["a", "a", "a", "b", "b", "b"], source_split="train")
    relabelled = relabel(decoded, rescanned)
    assert relabelled["class_name"].tolist() == ["a", "a", "a", "b", "b", "b"]
    assert (relabelled["source_split"] == "train").all()
    with pytest.raises(ValueError, match="does not list the scanned files"):
        relabel(decoded, rescanned.iloc[1:])


def test_an_evaluation_set_puts_every_usable_image_in_test_whatever_the_layout():
    rows = [("train/cat/1.png", "cat", "train", "a"), ("test/dog/2.png", "dog", "test", "b"),
            ("val/fox/3.png", "fox", "val", "c"), ("cat/4.png", "cat", None, "d")]  # fmt: skip
    manifest = manifest_rows(rows)
    manifest.loc[3, "status"] = "quarantined"
    assigned, classes = assign_splits(manifest, SplitConfig(evaluation_only=True))
    assert classes == ["cat", "dog", "fox"], "classes come from every folder, not only train"
    assert assigned["split"].tolist()[:3] == ["test"] * 3 and pd.isna(assigned.loc[3, "split"])
    assert assigned["label"].tolist()[:3] == [0, 1, 2]
    assert dataset_fingerprint("decoded", manifest, SplitConfig(evaluation_only=True)) != dataset_fingerprint(
        "decoded", manifest, SplitConfig()
    ), "an evaluation set never shares a folder with a training dataset of the same images"
    with pytest.raises(BadInputError, match="no usable images to evaluate on"):
        assign_splits(manifest.iloc[[3]], SplitConfig(evaluation_only=True))

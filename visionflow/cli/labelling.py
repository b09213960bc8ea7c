"""`visionflow review` and `visionflow labels`: choose what people label, and take their labels in.

Both read and write files under VISIONFLOW_HOME only (no Prefect run, no TensorFlow), so they
answer in about a second; the review flow (flows/review.py) asks the same questions in Prefect's
UI, and `visionflow train --with-labels` learns from what the labels store holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from visionflow.cli.common import HomeOption, JsonOption, app, fail, finish, given, validated_config

if TYPE_CHECKING:
    from visionflow.labels.labels_store import ImportReport, LabelsStore
    from visionflow.labels.review_sets import ReviewSet

labels_app = typer.Typer(help="Take labels in and look at the labels store.", no_args_is_help=True)
app.add_typer(labels_app, name="labels")

MIN_PREFIX = 8  # Hex digits of a sha256 that `labels resolve` takes for the whole digest.
MAX_ITEMS_SHOWN = 10  # Review items and rejections the human summary lists; --json has them all.
ModelOption = Annotated[
    str | None, typer.Option(help="The registered model whose classes a label may take.", show_default="champion")
]


@app.command()
def review(
    drop: Annotated[str, typer.Option(help="A scored drop: its folder, or its name under predictions/.")],
    count: Annotated[int | None, typer.Option(help="Contents the model is least sure of.", show_default="40")] = None,
    random: Annotated[int | None, typer.Option(help="Contents drawn at random, a control.", show_default="10")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the random draw.", show_default="0")] = None,
    model: Annotated[
        str | None, typer.Option(help="The registered model whose predictions choose.", show_default="champion")
    ] = None,
    export: Annotated[
        tuple[str, Path] | None,
        typer.Option(metavar="label-studio FILE", help="Also write the review as Label Studio tasks to FILE."),
    ] = None,
    document_root: Annotated[
        Path | None,
        typer.Option(help="Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, for image URLs.", show_default="/"),
    ] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Choose the drop's contents the model is least sure of (smallest margin between its two best classes), plus a few at random, for people to label.

    Example: visionflow review --drop inbox/2026-12-07 --count 40 --random 10 --export label-studio tasks.json
    """  # noqa: E501 (typer shows each docstring paragraph as written)
    from visionflow.errors import VisionflowError
    from visionflow.home import configure_environment
    from visionflow.tasks.score.choose_review import ReviewChoiceConfig, choose_review

    export = export if export and export[0] is not None else None  # Typer gives (None, None) when not given.
    if export is not None and export[0] != "label-studio":
        fail(f"--export takes the format label-studio and a file, not {export[0]!r}", 2, json_output)
    layout = configure_environment(home)
    config = validated_config(
        ReviewChoiceConfig, given(count=count, random=random, seed=seed, model=model), json_output
    )
    try:
        chosen = choose_review(layout, drop, config)
        if export is not None:
            from visionflow.labels.label_studio import labelling_config, write_review_tasks

            write_review_tasks(chosen, export[1], str(document_root or "/"))
            config_file = export[1].with_suffix(".label-config.xml")
            config_file.write_text(labelling_config(chosen.classes))
            exported = f"Label Studio tasks in {export[1]}, its labelling config in {config_file}"
    except VisionflowError as error:
        fail(str(error), error.exit_code, json_output)
    finish(chosen, json_output, lambda review_set: [*_review_lines(review_set), *([exported] if export else [])])


def _review_lines(chosen: ReviewSet) -> list[str]:
    lines = [
        f"review {chosen.review_id}: {chosen.least_sure} least-sure and {chosen.random} random contents "
        f"of drop {chosen.drop_name}, by model {chosen.model_version}",
        "  margin  model's best classes                      file",
    ]
    for item in chosen.items[:MAX_ITEMS_SHOWN]:
        guesses = ", ".join(f"{guess.class_name} {guess.probability:.2f}" for guess in item.top)
        lines.append(
            f"  {item.margin:6.3f}  {guesses:<40}  {item.drop_path}" + ("  (random)" * (item.reason == "random"))
        )
    if len(chosen.items) > MAX_ITEMS_SHOWN:
        lines.append(f"  ... and {len(chosen.items) - MAX_ITEMS_SHOWN} more (--json lists them all)")
    lines.append(f"answer it in Prefect's UI: run the `review` deployment with review_id={chosen.review_id}")
    return lines


@labels_app.command("import")
def import_labels(
    file: Annotated[Path, typer.Argument(help="Label Studio's JSON export, or a CSV of sha256 (or path) and label.")],
    format: Annotated[
        Literal["csv", "label-studio"] | None,
        typer.Option(help="The file's format.", show_default="from the file's suffix: .csv or .json"),
    ] = None,
    model: ModelOption = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Check labels against the labels contract and store those that meet it; importing a file twice adds nothing.

    A label's class must be one of the model's, and its image one visionflow has scored, still readable and decodable. Exit 4 when some rows were rejected (the others are stored).
    """  # noqa: E501 (typer shows each docstring paragraph as written)
    from visionflow.errors import BadInputError, VisionflowError
    from visionflow.home import configure_environment
    from visionflow.images.imaging import ImageSpec
    from visionflow.labels import labels_store
    from visionflow.models.registry import CHAMPION, find_model

    layout = configure_environment(home)
    chosen_format = format or ("csv" if file.suffix.lower() == ".csv" else "label-studio")
    try:
        if not file.is_file():
            raise BadInputError(f"{file} is not a file: pass Label Studio's JSON export or a CSV of labels")
        record = find_model(layout.models, model or CHAMPION)
        rows, unreadable = _read_label_file(file, chosen_format)
        spec = ImageSpec(*record.input_shape)
        report = labels_store.import_labels(layout, rows, record.class_names, spec, base=file.resolve().parent)
    except VisionflowError as error:
        fail(str(error), error.exit_code, json_output)
    report = report.model_copy(update={"rows": report.rows + len(unreadable), "rejected": unreadable + report.rejected})
    finish(report, json_output, _import_lines)
    if report.rejected:
        raise typer.Exit(BadInputError.exit_code)


def _read_label_file(file: Path, chosen_format: str):
    """(label rows, rejected rows) of a labels file in the given format."""
    if chosen_format == "csv":
        from visionflow.labels.csv_labels import read_csv_labels

        return read_csv_labels(file)
    from visionflow.labels.label_studio import read_label_studio_export

    return read_label_studio_export(file)


def _import_lines(report: ImportReport) -> list[str]:
    lines = [
        f"{report.rows} rows: {report.accepted} labels stored, {report.already_stored} stored before, "
        f"{report.not_labels} not labels (not sure), {len(report.rejected)} rejected",
        *[f"  rejected {rejection.origin}: {rejection.reason}" for rejection in report.rejected[:MAX_ITEMS_SHOWN]],
    ]
    if len(report.rejected) > MAX_ITEMS_SHOWN:
        lines.append(f"  ... and {len(report.rejected) - MAX_ITEMS_SHOWN} more (--json lists them all)")
    if report.conflicts:
        lines.append(
            f"{len(report.conflicts)} contents now have conflicting labels: visionflow labels list --conflicts"
        )
    snapshot = report.snapshot
    lines.append(
        f"the store: {snapshot.count} labelled contents for training, {snapshot.conflicts} held out as conflicts"
    )
    return lines


@labels_app.command()
def resolve(
    sha256: Annotated[
        str,
        typer.Argument(help="The content in conflict, or a unique prefix of its sha256 (`labels list --conflicts`)."),
    ],
    label: Annotated[str, typer.Argument(metavar="CLASS", help="The class it is, as the people who agree decided.")],
    reviewer: Annotated[str, typer.Option(help="Who decided, kept with the resolution.")],
    model: ModelOption = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Settle a conflict: CLASS is what the content is. Every label given before stays stored; the latest resolution decides what training takes.

    Example: visionflow labels resolve 1d9e04f2a8c3... cat --reviewer ana
    """  # noqa: E501 (typer shows each docstring paragraph as written)
    from visionflow.errors import BadInputError, VisionflowError
    from visionflow.home import configure_environment
    from visionflow.labels.labels_store import LabelRow, LabelsStore
    from visionflow.models.registry import CHAMPION, find_model

    layout = configure_environment(home)
    try:
        classes = find_model(layout.models, model or CHAMPION).class_names
        if label not in classes:
            raise BadInputError(f"class {label!r} is not one of the model's classes ({', '.join(classes)})")
        if not reviewer.strip():
            raise BadInputError("--reviewer is empty: a resolution names who decided")
        with LabelsStore(layout) as store:
            matching = store.contents_matching(sha256) if len(sha256) >= MIN_PREFIX else []
            if len(matching) != 1:
                found = f"{len(matching)} contents match" if matching else "no label matches"
                raise BadInputError(
                    f"{found} {sha256!r} in the labels store: give the content's sha256, or a unique prefix of "
                    f"{MIN_PREFIX} or more digits (`labels list --conflicts`)"
                )
            sha256 = matching[0]
            store.add(sha256, LabelRow(sha256=sha256, class_name=label, source="resolution", reviewer=reviewer,
                                       origin="resolve"))  # fmt: skip
            listing = _listing(store, only_conflicts=False, contents=[sha256])
    except VisionflowError as error:
        fail(str(error), error.exit_code, json_output)
    finish(listing, json_output, _list_lines)


@labels_app.command("list")
def list_labels(
    conflicts: Annotated[bool, typer.Option("--conflicts", help="Only contents with conflicting labels.")] = False,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """The labels store: its labels (or only its conflicts), and how many contents training takes."""
    from visionflow.home import configure_environment
    from visionflow.labels.labels_store import LabelsStore

    layout = configure_environment(home)
    with LabelsStore(layout) as store:
        listing = _listing(store, conflicts)
    finish(listing, json_output, _list_lines)


def _listing(store: LabelsStore, only_conflicts: bool, contents: list[str] | None = None):
    from visionflow.labels.labels_store import LabelsListing

    conflicting = store.conflicts()
    labels = [label for rows in conflicting.values() for label in rows] if only_conflicts else store.labels(contents)
    return LabelsListing(snapshot=store.snapshot(), conflicting=sorted(conflicting), labels=labels)


def _list_lines(listing) -> list[str]:
    snapshot = listing.snapshot
    lines = [
        f"{snapshot.count} labelled contents for training (snapshot {snapshot.digest[:12]}), "
        f"{snapshot.conflicts} held out as conflicts"
    ]
    for label in listing.labels:
        conflict = "  CONFLICT" if label.sha256 in listing.conflicting else ""
        who = f" by {label.reviewer}" if label.reviewer else ""
        lines.append(f"  {label.sha256[:12]}  {label.class_name:<16} {label.source}{who} {label.labelled_at}{conflict}")
    return lines

"""Stage 2 of ingestion: decode every readable file once into model-shaped pixels.

Decoding is the expensive part of ingestion, so it runs on every core and its output is keyed
by a fingerprint of the content and the decode settings: a Prefect cache hit on that key means
an unchanged dataset is never decoded twice. Pixels go to Arrow shards on disk as workers
finish, so memory does not grow with the number of images.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
from prefect import task
from pydantic import BaseModel, Field, field_validator

from visionflow.atomic import write_json_atomically
from visionflow.images.imaging import MAX_PIXELS, ImageSpec
from visionflow.images.workers import decode_chunk_to_shard, decode_rows, write_pixel_shard
from visionflow.parallel import chunked, default_workers, map_chunks
from visionflow.processes.dask_shards import DaskConfig, map_shards
from visionflow.run_context import progress_reporter, run_logger, start_progress
from visionflow.tasks.ingest.scan_files import STATUS_OK, STATUS_QUARANTINED, content_fingerprint

# Bump when decode_image changes the pixels it produces, so old caches are not reused.
DECODER_VERSION = 1

# Most pixel bytes one decode chunk (one worker task, one shard file) holds: 64 MiB.
SHARD_BYTES = 64 * 1024 * 1024

# The file that marks a complete decode folder; it is written last.
DECODED_MANIFEST_NAME = "decoded_manifest.parquet"

# The sha256 of every pixel shard, recorded when it was written, checked before a reuse.
SHARD_CHECKSUMS_NAME = "shards.json"

DECODE_COLUMNS = ["format", "width", "height", "mode"]


class DecodeConfig(BaseModel):
    """How stage 2 turns files into pixels. image_size and channels define the model input."""

    image_size: int = Field(default=32, ge=8, le=1024)  # Output height and width, in pixels.
    channels: int | None = None  # 3 for RGB, 1 for grayscale; None takes the source's own (1 for demo).
    max_pixels: int = Field(default=MAX_PIXELS, ge=1)  # Largest source width*height accepted.
    workers: int = Field(default_factory=default_workers, ge=1)  # Decoding processes.
    files_per_chunk: int = Field(default=2048, ge=1)  # Files per worker task and per pixel shard.

    @field_validator("channels")
    @classmethod
    def _one_or_three_channels(cls, channels: int | None) -> int | None:
        if channels not in (None, 1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), not {channels}")
        return channels

    def for_source(self, suggested_channels: int) -> DecodeConfig:
        """These settings with channels filled in from the source when the user left them open."""
        return self if self.channels else self.model_copy(update={"channels": suggested_channels})

    def image_spec(self) -> ImageSpec:
        """The ImageSpec that decode_image and scoring use for these settings."""
        if self.channels is None:
            raise ValueError("channels is not set: call for_source first, or set 1 or 3")
        return ImageSpec(self.image_size, self.image_size, self.channels, self.max_pixels)


def decode_key(manifest: pd.DataFrame, config: DecodeConfig) -> str:
    """The cache key of a decode: the content fingerprint plus every setting that changes pixels."""
    settings = {
        "decoder_version": DECODER_VERSION,
        "image_size": config.image_size,
        "channels": config.channels,
        "max_pixels": config.max_pixels,
    }
    text = content_fingerprint(manifest) + json.dumps(settings, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def decode_dataset(
    manifest: pd.DataFrame,
    root: Path,
    config: DecodeConfig,
    output_dir: Path,
    on_progress: Callable[[int, int, float], None] | None = None,
    dask: DaskConfig | None = None,
) -> pd.DataFrame:
    """Decode every "ok" row of the manifest; write pixel shards and the decoded manifest.

    Returns the manifest with format, width, height and mode filled in and undecodable files
    quarantined with the reason. output_dir is replaced as a whole, so a half-finished decode
    folder from a killed run is never mistaken for a complete one.
    """
    spec = config.image_spec()
    root = Path(root).resolve()
    manifest = manifest.reset_index(drop=True)
    if reusable_decode(output_dir):
        # The folder is named by the decode key, so a complete, verified one holds exactly these pixels.
        return read_decoded_manifest(output_dir)
    # Each run fills its own work folder, so two runs decoding the same content cannot collide.
    work_dir = output_dir.with_name(f"{output_dir.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    (work_dir / "pixels").mkdir(parents=True)

    readable = manifest.index[manifest["status"] == STATUS_OK]
    root_text = str(root)
    rows = [
        (int(row_id), f"{root_text}/{path}", sha256, int(size))
        for row_id, path, sha256, size in zip(
            readable,
            manifest.loc[readable, "path"],
            manifest.loc[readable, "sha256"],
            manifest.loc[readable, "bytes"],
            strict=True,
        )
    ]
    # A chunk's pixels are held in memory by its worker; cap them at SHARD_BYTES, in bytes.
    files_per_chunk = max(1, min(config.files_per_chunk, SHARD_BYTES // spec.pixel_bytes))
    chunks = chunked(rows, files_per_chunk)
    shard_paths = [str(work_dir / "pixels" / f"shard-{index:05d}.arrow") for index in range(len(chunks))]
    outcomes: list = []
    checksums: dict[str, str] = {}
    for chunk_index, (chunk_outcomes, checksum) in _decoded_shards(
        chunks, shard_paths, spec, root_text, config, dask or DaskConfig(), on_progress
    ):
        outcomes.extend(chunk_outcomes)
        checksums[Path(shard_paths[chunk_index]).name] = checksum

    decoded = apply_decode_outcomes(manifest, outcomes)
    write_json_atomically(work_dir / SHARD_CHECKSUMS_NAME, dict(sorted(checksums.items())))
    decoded.to_parquet(work_dir / DECODED_MANIFEST_NAME, index=False)
    try:
        work_dir.rename(output_dir)
    except OSError:
        # Another run finished the same decode first; its folder holds the same pixels.
        shutil.rmtree(work_dir, ignore_errors=True)
        if not (output_dir / DECODED_MANIFEST_NAME).exists():
            raise
    return decoded


def _decoded_shards(
    chunks: list,
    shard_paths: list[str],
    spec: ImageSpec,
    root: str,
    config: DecodeConfig,
    dask: DaskConfig,
    on_progress: Callable[[int, int, float], None] | None,
) -> Iterator[tuple[int, tuple[list, str]]]:
    """(chunk index, (outcomes, the shard's sha256)) per chunk, in any order: decoded and written by
    this machine's worker processes, or decoded on a Dask cluster and written here, so the shards
    are the same files either way and a shard Dask ran twice is written once."""
    if not dask.enabled:
        pairs = list(zip(chunks, shard_paths, strict=True))
        yield from map_chunks(decode_chunk_to_shard, pairs, config.workers, (spec, root), on_progress)
        return
    for index, (outcomes, good_ids, good_pixels) in map_shards(
        "decode", decode_rows, chunks, (spec, root), dask, on_progress
    ):
        yield index, (outcomes, write_pixel_shard(shard_paths[index], good_ids, good_pixels, spec.pixel_bytes))


def apply_decode_outcomes(manifest: pd.DataFrame, outcomes: list) -> pd.DataFrame:
    """Merge per-file decode outcomes (row id, format, width, height, mode, reason) into the manifest."""
    decoded = manifest.copy()
    for column in DECODE_COLUMNS:
        decoded[column] = None
    # True: decoded; False: the decoder rejected it; null: never reached the decoder (the scan
    # quarantined it), so hidden or misplaced files do not count against the decode rate.
    decoded["decoded"] = pd.array([pd.NA] * len(decoded), dtype="boolean")
    if not outcomes:
        return _typed(decoded)
    frame = pd.DataFrame(outcomes, columns=["row_id", *DECODE_COLUMNS, "decode_reason"]).set_index("row_id")
    decoded.loc[frame.index, DECODE_COLUMNS] = frame[DECODE_COLUMNS].to_numpy()
    decoded.loc[frame.index, "decoded"] = frame["decode_reason"].isna().to_numpy()
    rejected = frame.index[frame["decode_reason"].notna()]
    decoded.loc[rejected, "status"] = STATUS_QUARANTINED
    decoded.loc[rejected, "reason"] = frame.loc[rejected, "decode_reason"]
    return _typed(decoded)


def _typed(decoded: pd.DataFrame) -> pd.DataFrame:
    decoded["width"] = decoded["width"].astype("Int64")
    decoded["height"] = decoded["height"].astype("Int64")
    return decoded


def verify_decode_dir(decode_dir: Path) -> str | None:
    """None when every pixel shard is the one recorded when it was written, else what is wrong.

    A cached decode is reused for every later ingest of the same content, so pixels altered on
    disk would otherwise flow into the split files under the original dataset fingerprint.
    """
    try:
        recorded = json.loads((Path(decode_dir) / SHARD_CHECKSUMS_NAME).read_text())
    except (OSError, ValueError):
        return "it records no checksums of its pixel shards"
    shards = Path(decode_dir) / "pixels"
    found = {path.name for path in shards.glob("shard-*.arrow")}
    if found != set(recorded):
        return f"its pixel shards are not the ones recorded ({len(found)} found, {len(recorded)} recorded)"
    for name, expected in sorted(recorded.items()):
        with open(shards / name, "rb") as handle:
            if hashlib.file_digest(handle, "sha256").hexdigest() != expected:
                return f"pixel shard {name} changed on disk after it was written"
    return None


def reusable_decode(output_dir: Path) -> bool:
    """True when output_dir holds a complete decode whose shards check out; a folder that does not
    check out is removed with a warning, so the pixels are decoded again."""
    if not (output_dir / DECODED_MANIFEST_NAME).exists():
        return False
    problem = verify_decode_dir(output_dir)
    if problem is None:
        return True
    run_logger(__name__).warning("not reusing the decoded pixels in %s: %s; decoding again", output_dir, problem)
    shutil.rmtree(output_dir, ignore_errors=True)
    return False


def read_decoded_manifest(decode_dir: Path) -> pd.DataFrame:
    """Load the manifest a finished decode wrote; row ids are its index, as in the pixel shards."""
    return pd.read_parquet(Path(decode_dir) / DECODED_MANIFEST_NAME)


def iterate_pixel_shards(decode_dir: Path):
    """Yield (row ids, pixels) Arrow arrays shard by shard, holding one shard in memory at a time."""
    for shard_path in sorted((Path(decode_dir) / "pixels").glob("shard-*.arrow")):
        with pa.memory_map(str(shard_path)) as source:
            table = pa.ipc.open_file(source).read_all()
        yield table.column("row_id").combine_chunks(), table.column("pixels").combine_chunks()


def decode_dir_for(manifest: pd.DataFrame, config: DecodeConfig, decoded_root: Path) -> Path:
    """Where the decode of this content with these settings lives: a folder named by its key."""
    return Path(decoded_root) / decode_key(manifest, config)[:24]


def _decode_cache_key(context, parameters: dict) -> str | None:
    """Prefect cache key: the decode key, but only once its output folder is complete on disk and
    its shards are the ones written.

    Returning None for a missing or altered folder makes Prefect run the task rather than hand
    back a path to files someone deleted or changed; the task then rebuilds the folder.
    """
    output_dir = decode_dir_for(parameters["manifest"], parameters["config"], parameters["decoded_root"])
    if not reusable_decode(output_dir):
        return None
    # The folder's location is part of the key: homes that share Prefect's result storage must
    # not hand each other paths.
    location = hashlib.sha256(str(output_dir.resolve()).encode()).hexdigest()[:16]
    return f"visionflow-decode-{output_dir.name}-{location}"


@task(
    name="decode-images",
    cache_key_fn=_decode_cache_key,
    cache_expiration=timedelta(days=30),
    result_serializer="json",
)
def decode_images_task(
    manifest: pd.DataFrame, root: Path, config: DecodeConfig, decoded_root: Path, dask: DaskConfig | None = None
) -> str:
    """Prefect task: decode on every core (or on a Dask cluster), logging progress; returns the
    decode folder's path."""
    log = run_logger(__name__)
    output_dir = decode_dir_for(manifest, config, decoded_root)
    to_decode = int((manifest["status"] == STATUS_OK).sum())
    if reusable_decode(output_dir):
        log.info("reusing the pixels already decoded for this content and these settings in %s", output_dir)
        return str(output_dir)
    progress = start_progress("decode-progress", "Images decoded, percent")
    started = time.perf_counter()
    reporter = progress_reporter(log, progress, "decoded", to_decode)
    decoded = decode_dataset(manifest, root, config, output_dir, reporter, dask)
    seconds = time.perf_counter() - started
    rejected = int((decoded["status"] != STATUS_OK).sum() - (manifest["status"] != STATUS_OK).sum())
    log.info(
        "decoded %d files in %.1f s (%.0f images/s), %d rejected by the decoder; pixels in %s",
        to_decode,
        seconds,
        to_decode / max(seconds, 1e-9),
        rejected,
        output_dir,
    )
    return str(output_dir)

"""Local paths and `s3://` URIs for the run's directories.

TensorFlow 2.20 has no built-in S3 file system (it left for tensorflow-io, which does not follow
every TensorFlow release), so the trainer never hands an `s3://` URI to TensorFlow: it works in a
local staging directory and copies with boto3 (credentials from the pod's IRSA role, as for any AWS
SDK). Uploads put the files a reader looks for last (the checkpoint index, `saved_model.pb`), so a
reader polling the bucket never sees an index or a model version whose files are still missing.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
from pathlib import Path
from typing import Iterable


def is_s3(uri: str | None) -> bool:
    return bool(uri) and uri.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    """s3://bucket/a/b/ -> ("bucket", "a/b/") (the key prefix keeps a trailing slash if given)."""
    rest = uri[len("s3://"):]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket")
    return bucket, key


def join(uri: str, *parts: str) -> str:
    if is_s3(uri):
        return posixpath.join(uri, *parts)
    return os.path.join(uri, *parts)


def _client():
    import boto3

    return boto3.client("s3")


def _prefix(key: str) -> str:
    return key if not key or key.endswith("/") else key + "/"


def list_keys(uri: str) -> list[str]:
    """Every key under an s3:// prefix, relative to it, sorted."""
    bucket, key = split_s3(uri)
    prefix = _prefix(key)
    keys = []
    for page in _client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [obj["Key"][len(prefix):] for obj in page.get("Contents", [])]
    return sorted(keys)


def list_children(uri: str) -> list[str]:
    """Names directly under a directory or s3:// prefix (files and sub-directories)."""
    if is_s3(uri):
        return sorted({key.split("/", 1)[0] for key in list_keys(uri) if key})
    return sorted(os.listdir(uri)) if os.path.isdir(uri) else []


def download(uri: str, local_dir: str | os.PathLike, names: Iterable[str] | None = None) -> list[str]:
    """Copy the objects under an s3:// prefix (or only `names`, relative keys) into local_dir."""
    bucket, key = split_s3(uri)
    prefix = _prefix(key)
    names = list_keys(uri) if names is None else list(names)
    client = _client()
    for name in names:
        target = Path(local_dir, *name.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, prefix + name, str(target))
    return names


def read_text(uri: str) -> str | None:
    """A small file's text, or None when it does not exist."""
    if not is_s3(uri):
        return Path(uri).read_text() if os.path.exists(uri) else None
    bucket, key = split_s3(uri)
    client = _client()
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    except client.exceptions.NoSuchKey:
        return None


def write_text(uri: str, text: str) -> None:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        _client().put_object(Bucket=bucket, Key=key, Body=text.encode())
        return
    Path(uri).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{uri}.tmp-{os.getpid()}"
    Path(tmp).write_text(text)
    os.replace(tmp, uri)  # readers never see half a file


def upload(local_dir: str | os.PathLike, uri: str, names: Iterable[str] | None = None, last: Iterable[str] = ()) -> list[str]:
    """Copy files of local_dir (all, or only `names`: relative posix paths) under an s3:// prefix;
    names in `last` (basenames) go after every other file."""
    local_dir = Path(local_dir)
    if names is None:
        names = [p.relative_to(local_dir).as_posix() for p in local_dir.rglob("*") if p.is_file()]
    last = set(last)
    ordered = sorted(names, key=lambda n: (posixpath.basename(n) in last, n))
    bucket, key = split_s3(uri)
    prefix = _prefix(key)
    client = _client()
    for name in ordered:
        client.upload_file(str(local_dir / name), bucket, prefix + name)
    return ordered


def delete(uri: str, names: Iterable[str]) -> None:
    bucket, key = split_s3(uri)
    prefix = _prefix(key)
    names = list(names)
    if names:
        _client().delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": prefix + n} for n in names]})


class RunDir:
    """A run directory TensorFlow can write: the path itself when local, else a staging directory
    mirrored to the s3:// URI by `pull` and `push`."""

    def __init__(self, uri: str, staging_name: str):
        self.uri = uri
        self.remote = is_s3(uri)
        if self.remote:
            self.local = tempfile.mkdtemp(prefix=f"cloudml-{staging_name}-")
        else:
            self.local = uri
            os.makedirs(uri, exist_ok=True)

    def push(self, names: Iterable[str] | None = None, last: Iterable[str] = ()) -> None:
        if self.remote:
            upload(self.local, self.uri, names, last)

    def cleanup(self) -> None:
        if self.remote:
            shutil.rmtree(self.local, ignore_errors=True)


# --- checkpoints ---------------------------------------------------------------------------------

CHECKPOINT_INDEX = "checkpoint"  # the text file tf.train.CheckpointManager keeps next to checkpoints


def checkpoint_names(index_text: str | None) -> tuple[str | None, list[str]]:
    """(latest, all) checkpoint prefixes named in a `checkpoint` index file."""
    if not index_text:
        return None, []
    latest, every = None, []
    for line in index_text.splitlines():
        key, _, value = line.partition(":")
        value = value.strip().strip('"')
        if key.strip() == "model_checkpoint_path":
            latest = posixpath.basename(value)
        elif key.strip() == "all_model_checkpoint_paths":
            every.append(posixpath.basename(value))
    return latest, every or ([latest] if latest else [])


def checkpoint_step(name: str | None) -> int | None:
    """ckpt-1200 -> 1200 (the trainer numbers checkpoints by global step)."""
    if not name or "-" not in name:
        return None
    tail = name.rsplit("-", 1)[1]
    return int(tail) if tail.isdigit() else None


def latest_checkpoint_step(checkpoint_uri: str) -> int | None:
    """The step of the newest checkpoint under a checkpoint directory (local or s3), or None."""
    latest, _ = checkpoint_names(read_text(join(checkpoint_uri, CHECKPOINT_INDEX)))
    return checkpoint_step(latest)


class CheckpointDir(RunDir):
    """Checkpoints: `pull` fetches the latest one (and the index) from S3 before a restore; `push`
    uploads a new one, then the index, then deletes what the manager no longer keeps."""

    def pull(self) -> None:
        if not self.remote:
            return
        index = read_text(join(self.uri, CHECKPOINT_INDEX))
        latest, _ = checkpoint_names(index)
        if latest is None:
            return
        files = [k for k in list_keys(self.uri) if k.startswith(latest + ".")]
        download(self.uri, self.local, files)
        Path(self.local, CHECKPOINT_INDEX).write_text(index)

    def push_checkpoint(self, name: str, kept: list[str]) -> None:
        if not self.remote:
            return
        files = [p.name for p in Path(self.local).iterdir() if p.name.startswith(name + ".")]
        upload(self.local, self.uri, files + [CHECKPOINT_INDEX], last=[CHECKPOINT_INDEX])
        stale = [k for k in list_keys(self.uri) if k.startswith("ckpt-") and k.split(".", 1)[0] not in kept]
        delete(self.uri, stale)

"""`python -m cloudml_trainer predict`: batch prediction with an exported SavedModel (the
batchPrediction workload's default command).

    --model-dir D      the model's directory (local or s3://), holding <version>/ SavedModels
    --model-version N  that version (default: the highest, as TF Serving serves)
    --input I          a file, or a directory / s3:// prefix whose files are all read (names
                       starting with '.' or '_' are skipped)
    --output O         a directory / s3:// prefix: one `<input file name>.predictions.jsonl` per
                       input file, one line per input record, in input order

Records: `.jsonl`/`.json` files hold one JSON value per line — an object mapping the signature's
input names to values, or (single-input signatures) the input value itself, as in TF Serving's
`{"instances": [...]}`; `.csv` files hold one row of numbers per line (a non-numeric first line is
a header and is skipped) for a single-input signature. Each output line is
`{"record": <index in its file>, "predictions": <value>}` (one output), or the record index plus one key
per output.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

from cloudml_trainer import storage
from cloudml_trainer.training import emit

SKIP_PREFIXES = (".", "_")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cloudml_trainer predict", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False)
    p.add_argument("--model-dir", default=os.environ.get("CLOUDML_MODEL_DIR"), required="CLOUDML_MODEL_DIR" not in os.environ)
    p.add_argument("--model-version", type=int, default=_int_env("CLOUDML_MODEL_VERSION"))
    p.add_argument("--input", default=os.environ.get("CLOUDML_INPUT"), required="CLOUDML_INPUT" not in os.environ)
    p.add_argument("--output", default=os.environ.get("CLOUDML_OUTPUT"), required="CLOUDML_OUTPUT" not in os.environ)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--signature", default="serving_default")
    return p


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def model_version(model_dir: str, requested: int | None) -> int:
    versions = sorted(int(n) for n in storage.list_children(model_dir) if n.isdigit())
    if requested is not None:
        if requested not in versions:
            raise SystemExit(f"cloudml_trainer predict: version {requested} not in {model_dir} (found {versions})")
        return requested
    if not versions:
        raise SystemExit(f"cloudml_trainer predict: no model version under {model_dir}")
    return versions[-1]


def input_files(input_uri: str) -> list[tuple[str, str]]:
    """(name, location) of every input file, sorted by name."""
    if storage.is_s3(input_uri):
        keys = storage.list_keys(input_uri)
        if not keys:  # a single object, not a prefix
            return [(input_uri.rstrip("/").rsplit("/", 1)[1], input_uri)]
        return [(k, storage.join(input_uri, k)) for k in keys
                if not any(part.startswith(SKIP_PREFIXES) for part in k.split("/"))]
    path = Path(input_uri)
    if path.is_file():
        return [(path.name, str(path))]
    return [(p.relative_to(path).as_posix(), str(p)) for p in sorted(path.rglob("*"))
            if p.is_file() and not any(part.startswith(SKIP_PREFIXES) for part in p.relative_to(path).parts)]


def read_records(name: str, text: str) -> list:
    if name.endswith(".csv"):
        rows = [row for row in csv.reader(io.StringIO(text)) if row]
        if rows and not _numeric(rows[0]):
            rows = rows[1:]
        return [[float(v) for v in row] for row in rows]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _numeric(row: list[str]) -> bool:
    try:
        [float(v) for v in row]
        return True
    except ValueError:
        return False


def predict_records(signature, records: list, batch_size: int) -> list[dict]:
    """Run the signature over records in batches; one output dict per record."""
    import numpy as np
    import tensorflow as tf

    input_specs = signature.structured_input_signature[1]
    names = sorted(input_specs)
    results = []
    for start in range(0, len(records), batch_size):
        batch = [_as_inputs(r, names) for r in records[start:start + batch_size]]
        columns = {n: [r[n] for r in batch] for n in names}
        tensors = {n: tf.constant(np.asarray(v), dtype=input_specs[n].dtype) for n, v in columns.items()}
        outputs = {k: v.numpy().tolist() for k, v in signature(**tensors).items()}
        for i in range(len(batch)):
            results.append({k: v[i] for k, v in outputs.items()})
    return results


def _as_inputs(record, names: list[str]) -> dict:
    """A record as {input name: value}: an object names them; anything else is the single input."""
    if isinstance(record, dict):
        missing = [n for n in names if n not in record]
        if missing:
            raise ValueError(f"record {record!r} lacks the inputs {missing}")
        return record
    if len(names) != 1:
        raise ValueError(f"the signature has inputs {names}: records must be JSON objects naming them")
    return {names[0]: record}


def output_line(index: int, outputs: dict) -> str:
    if len(outputs) == 1:
        return json.dumps({"record": index, "predictions": next(iter(outputs.values()))})
    return json.dumps({"record": index, **outputs})


def main(argv: list[str] | None = None) -> int:
    import tensorflow as tf

    args = parser().parse_args(argv)
    version = model_version(args.model_dir, args.model_version)
    version_uri = storage.join(args.model_dir, str(version))
    staging = tempfile.mkdtemp(prefix="cloudml-model-") if storage.is_s3(version_uri) else None
    out_local = tempfile.mkdtemp(prefix="cloudml-predictions-") if storage.is_s3(args.output) else args.output
    try:
        if staging:
            storage.download(version_uri, staging)
        signature = tf.saved_model.load(staging or version_uri).signatures[args.signature]
        total = 0
        os.makedirs(out_local, exist_ok=True)
        written = []
        for name, location in input_files(args.input):
            text = storage.read_text(location)
            records = read_records(name, text)
            outputs = predict_records(signature, records, args.batch_size)
            out_name = f"{name}.predictions.jsonl"
            target = Path(out_local, out_name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("".join(output_line(i, o) + "\n" for i, o in enumerate(outputs)))
            written.append(out_name)
            total += len(outputs)
        if storage.is_s3(args.output):
            storage.upload(out_local, args.output, written)
    finally:
        # Staging directories go, also when prediction fails.
        if storage.is_s3(args.output):
            shutil.rmtree(out_local, ignore_errors=True)
        if staging:
            shutil.rmtree(staging, ignore_errors=True)
    emit("predictions", model_version=version, files=len(written), records=total, output=args.output)
    return 0

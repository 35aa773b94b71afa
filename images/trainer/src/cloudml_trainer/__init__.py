"""cloudml_trainer — the program inside cloudml's trainer image.

    python -m cloudml_trainer [train] (--task NAME | --module PKG.MODULE) [--steps N] ...
    python -m cloudml_trainer predict --model-dir DIR --input IN --output OUT [--model-version N]

Training reads TF_CONFIG (written by cloudml's distributedTraining JobSet) and picks the
distribution strategy, checkpoints to CLOUDML_CHECKPOINT_DIR and resumes from the latest checkpoint
after a restart, writes TensorBoard logs to CLOUDML_LOG_DIR, exports a SavedModel (signature
`serving_default`) to CLOUDML_MODEL_DIR/<version>/ and writes its evaluation metrics as JSON (for
sweeps: CLOUDML_METRICS_DIR/<CLOUDML_TRIAL_INDEX>.json). Every directory may be a local path or an
`s3://` URI. See images/README.md for the task interface.
"""

__version__ = "0.1.0"

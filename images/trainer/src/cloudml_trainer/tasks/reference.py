"""The reference task: a small dense binary classifier on synthetic data, small enough that
distributed runs finish in seconds on CPU, with a known answer (the labels come from a fixed linear
rule plus noise, so a trained model reaches ~90% accuracy and a log loss well under 0.35).

Serving: input `features` (float32, [batch, 8]); output `predictions` (probability of class 1, [batch, 1]).
"""

from __future__ import annotations

import numpy as np

FEATURES = 8
INPUT_NAME = "features"
_TRUE_WEIGHTS_SEED = 1234
_EVAL_SEED = 99991


def add_arguments(parser) -> None:
    parser.add_argument("--hidden-units", type=int, default=16, help="Width of the hidden layer.")
    parser.add_argument("--num-examples", type=int, default=2048, help="Synthetic training examples per input pipeline.")
    parser.add_argument("--noise", type=float, default=0.3, help="Label noise (std of the noise added to the logit).")


def true_weights() -> np.ndarray:
    return np.random.RandomState(_TRUE_WEIGHTS_SEED).normal(size=FEATURES).astype(np.float32)


def examples(count: int, seed: int, noise: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """`count` synthetic examples: features ~ N(0, 1), label = [features . w + noise > 0]."""
    rng = np.random.RandomState(seed)
    features = rng.normal(size=(count, FEATURES)).astype(np.float32)
    logits = features @ true_weights() + noise * rng.normal(size=count)
    return features, (logits > 0).astype(np.float32).reshape(-1, 1)


def build_model(hp):
    import keras

    inputs = keras.Input(shape=(FEATURES,), name=INPUT_NAME)
    hidden = keras.layers.Dense(hp.hidden_units, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="probability")(hidden)
    return keras.Model(inputs, outputs, name="reference")


def train_dataset(hp, input_context):
    import tensorflow as tf

    features, labels = examples(hp.num_examples, seed=1 + input_context.input_pipeline_id, noise=hp.noise)
    batch = input_context.get_per_replica_batch_size(hp.batch_size)
    dataset = tf.data.Dataset.from_tensor_slices((features, labels))
    return dataset.shuffle(len(features), seed=7).repeat().batch(batch, drop_remainder=True).prefetch(2)


def eval_dataset(hp):
    import tensorflow as tf

    features, labels = examples(1024, seed=_EVAL_SEED, noise=hp.noise)
    return tf.data.Dataset.from_tensor_slices((features, labels)).batch(256)


def steps_per_epoch(hp) -> int:
    return max(1, hp.num_examples // hp.batch_size)

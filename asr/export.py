"""`asr-export MODEL OUT_DIR`: a SavedModel that turns raw waveforms into text, usable without `asr`.

Serving signature `serve(waveforms: float32 [B, N] at the bundle's sample rate, zero-padded,
lengths: int32 [B])` -> {"transcripts": string [B], "logits": float32 [B, T', C], "logit_lengths": int32 [B]}.
MFCC and normalization run inside the graph (asr.graph_features); decoding is greedy.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import keras
import tensorflow as tf

from asr.bundle import Bundle, BundleError, load_bundle
from asr.decoding import greedy_sparse
from asr.graph_features import features


def serving_function(bundle: Bundle):
    """The tf.function behind the `serve` endpoint."""
    model, options, vocab = bundle.model, bundle.features, bundle.vocab
    table = tf.constant(list(vocab.characters) + [""])

    def serve(waveforms: tf.Tensor, lengths: tf.Tensor) -> dict[str, tf.Tensor]:
        feats, counts = features(waveforms, lengths, options)  # [B, T, F], [B]
        if bundle.cmvn is not None:  # global statistics of the training split
            mask = tf.sequence_mask(counts, tf.shape(feats)[1], dtype=tf.float32)[:, :, None]
            feats = (feats - bundle.cmvn[0]) / bundle.cmvn[1] * mask
        logits = model({"features": feats, "lengths": counts}, training=False)  # [B, T', C]
        logit_lengths = model.output_lengths(counts)
        ids = greedy_sparse(logits, logit_lengths, vocab.blank_index)
        dense = tf.sparse.to_dense(ids, default_value=len(vocab.characters))  # blank -> ""
        transcripts = tf.strings.reduce_join(tf.gather(table, dense), axis=-1)
        # a batch whose transcripts are all empty gives a [B, 0] dense matrix: reduce_join still yields [B]
        return {"transcripts": transcripts, "logits": logits, "logit_lengths": logit_lengths}

    return serve


def export(bundle: Bundle, out_dir: Path) -> Path:
    """Write the SavedModel into out_dir (which must not exist yet, so nothing is overwritten)."""
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; choose a new directory (nothing is overwritten)")
    archive = keras.export.ExportArchive()
    archive.track(bundle.model)
    archive.add_endpoint(
        name="serve",
        fn=serving_function(bundle),
        input_signature=[
            tf.TensorSpec([None, None], tf.float32, name="waveforms"),
            tf.TensorSpec([None], tf.int32, name="lengths"),
        ],
    )
    archive.write_out(str(out_dir), verbose=False)
    return out_dir


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point `asr-export`."""
    parser = argparse.ArgumentParser(
        prog="asr-export", description="Export a trained model as a SavedModel: waveforms in, transcripts out."
    )
    parser.add_argument("model", help="training run directory, or its model/ bundle")
    parser.add_argument("out_dir", help="new directory for the SavedModel")
    args = parser.parse_args(argv)
    try:
        bundle = load_bundle(Path(args.model))
        out = export(bundle, Path(args.out_dir))
    except (BundleError, FileExistsError) as e:
        print(f"asr-export: {e}", file=sys.stderr)
        return 2
    print(f"SavedModel written to {out} (sample rate {bundle.features.sample_rate} Hz); signature `serve`")
    return 0


if __name__ == "__main__":
    sys.exit(main())

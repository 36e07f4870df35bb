"""A SavedModel that turns raw waveforms into text, usable without `asr` (`asr-export MODEL OUT_DIR`).

Serving signature `serve(waveforms: float32 [B, N] at the bundle's sample rate, zero-padded,
lengths: int32 [B])` -> {"transcripts": string [B], "logits": float32 [B, T', C], "logit_lengths": int32 [B]}.
MFCC and normalization run inside the graph (asr.data.graph_features); decoding is greedy. A model that runs
step by step (unidirectional, no convolutional front-end, global statistics or none:
asr.inference.stream.check_streamable) also gets `step(steps [S, F * stride], states [layers, 2, units])` ->
(logits [S, C], states) for streaming, with `tail` and `final` besides for a model with a look-ahead: the model's
own step function (CTCModel.step_function), which the recognizer's streams run too.

`serve` decodes each waveform whole: it does not cut long recordings at pauses as the recognizer does, so
`model.json` in OUT_DIR states its limit (`serve.max_seconds`: the bundle's longest training utterance; longer
waveforms should be cut by the caller) with the sample rate and the endpoints.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import tensorflow as tf

from asr.data.features import apply_global_stats
from asr.data.graph_features import features
from asr.decoding.ctc import greedy_sparse, sparse_to_strings, text_table
from asr.inference.bundle import Bundle
from asr.inference.stream import streamable


def serving_function(bundle: Bundle) -> tf.types.experimental.PolymorphicFunction:
    """The tf.function behind the `serve` endpoint."""
    model, options, vocab = bundle.model, bundle.features, bundle.vocab
    table = text_table(vocab.characters)

    def serve(waveforms: tf.Tensor, lengths: tf.Tensor) -> dict[str, tf.Tensor]:
        feats, counts = features(waveforms, lengths, options)  # [B, T, F], [B]
        if bundle.cmvn is not None:  # global statistics of the training split
            mask = tf.sequence_mask(counts, tf.shape(feats)[1], dtype=tf.float32)[:, :, None]
            feats = apply_global_stats(feats, bundle.cmvn) * mask
        logits = model({"features": feats, "lengths": counts}, training=False)  # [B, T', C]
        logit_lengths = model.output_lengths(counts)
        transcripts = sparse_to_strings(greedy_sparse(logits, logit_lengths, vocab.blank_index), table)
        # spaces squeezed and stripped, as the recognizer's transcripts (asr.inference.results)
        transcripts = tf.strings.strip(tf.strings.regex_replace(transcripts, " +", " "))
        return {"transcripts": transcripts, "logits": logits, "logit_lengths": logit_lengths}

    return serve


SPEC_FILE = "model.json"  # beside the SavedModel: what `serve` expects and its per-utterance limit


def export_spec(bundle: Bundle, streams: bool) -> dict:
    """The facts a caller of the SavedModel needs: the sample rate, the vocabulary, and the longest waveform
    `serve` is meant for (it decodes each whole, never cut at pauses)."""
    return {
        "format": "asr-savedmodel",
        "sample_rate": bundle.features.sample_rate,
        "vocabulary": bundle.vocab.characters,
        "serve": {
            "max_seconds": bundle.max_seconds,
            "cuts_long_recordings": False,
            "decoding": "greedy",
            "note": "cut longer recordings at pauses before calling serve (asr.load(...).transcribe does)",
        },
        "step": streams,
    }


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
    streams = streamable(bundle)
    if streams:  # the step function takes normalized steps: global statistics or none, no look-back
        step = bundle.model.step_function()
        archive.add_endpoint(name="step", fn=step, input_signature=step.input_signature)
    archive.write_out(str(out_dir), verbose=False)
    (out_dir / SPEC_FILE).write_text(json.dumps(export_spec(bundle, streams), indent=2, ensure_ascii=False) + "\n")
    return out_dir

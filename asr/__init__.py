"""asr: a small CTC speech-recognition pipeline on TensorFlow 2 / Keras 3, configured with Hydra."""

__version__ = "0.1.0"

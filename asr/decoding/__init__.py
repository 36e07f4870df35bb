"""Decoding: CTC log probabilities -> text (greedy, beam, n-best), n-gram LMs and their beam search, hotwords,
alignment, word timestamps and confidence. Nothing here builds or trains a model."""

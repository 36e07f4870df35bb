"""What `asr-bench` measures: one module per benchmark, the helpers they share in `asr.bench.common`."""

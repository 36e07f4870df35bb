# Set-up and the two everyday commands. `make demo` and `make test` each create .venv first if needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
DEMO_RUN := runs/demo/$(shell date +%Y-%m-%d_%H-%M-%S)

.PHONY: base-streaming setup demo base test test-fast lint corpus

setup: $(STAMP)

# Re-installs only when the lock or the package metadata changed; otherwise a no-op.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

# Debian's chromium for tests/test_browser.py (driven by Playwright's Python package, never `playwright install`):
# installed when /usr/bin/chromium is missing and this is root (CI); otherwise the test is skipped, saying why.
setup-browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	else echo "setup-browser: /usr/bin/chromium is missing; as root: make setup-browser (the browser test is skipped)"; fi

demo: setup
	$(BIN)/asr-train experiment=demo hydra.run.dir=$(DEMO_RUN)
	$(BIN)/asr-transcribe $(DEMO_RUN) data/test.jsonl --score

# The shipped base model: train experiment=base into runs/base (rerunning resumes an interrupted training, or only
# re-scores a finished one), then write it into models/base with float16 weights, replacing the shipped one (git
# shows what changed; models/base/MODEL_CARD.md is kept).
BASE_RUN ?= runs/base
base: setup
	$(BIN)/asr-train experiment=base hydra.run.dir=$(BASE_RUN)
	$(BIN)/python scripts/ship_base.py $(BASE_RUN) models/base --force

# Its streaming twin (experiment=base_streaming: unidirectional, for speech_streaming and fillets_nl_streaming to
# start from), the same way into models/base_streaming.
BASE_STREAMING_RUN ?= runs/base_streaming
base-streaming: setup
	$(BIN)/asr-train experiment=base_streaming hydra.run.dir=$(BASE_STREAMING_RUN)
	$(BIN)/python scripts/ship_base.py $(BASE_STREAMING_RUN) models/base_streaming --force

# Everything, training tests included (what CI runs); one pytest-xdist worker per usable core, the tests of
# the shared demo model on one of them.
test: setup setup-browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n auto --dist loadgroup

# The inner loop: tests not marked slow (no training, no command that trains).
test-fast: setup
	$(BIN)/ruff check .
	HYPOTHESIS_PROFILE=fast $(BIN)/python -m pytest -q -m "not slow" -n auto

lint: setup
	$(BIN)/ruff check .

# Regenerates data/ (needs espeak-ng: apt-get install espeak-ng sox).
corpus: setup
	$(BIN)/python scripts/make_corpus.py

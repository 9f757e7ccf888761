# The verbs of the project. `make up` starts the pipeline on its embedded defaults,
# `make test` runs the whole suite; both install into .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SOURCES := src libs/common/src services/ingest/src services/transcribe/src services/embed/src services/api/src

.PHONY: install up test test-fast system-packages browser-packages test-pinecone test-images images lint bench bench-index bench-box bench-scale bench-api bench-transcribe docs clean

install: $(STAMP)

# torch first, pinned: the CPU wheel on this machine kind. Letting pip choose pulls CUDA.
$(STAMP): pyproject.toml libs/common/pyproject.toml services/*/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e libs/common -e services/ingest -e 'services/transcribe[multilingual]' \
		-e services/embed -e services/api -e '.[dev]'
	$(PY) -m streamscribe.embed.onnx_export  # the lean embed backend's int8 model, once
	touch $@

up: install
	$(VENV)/bin/streamscribe up

# the system tools the tests use (espeak-ng, sox, ffmpeg, kcat, prometheus, chromium,
# chromium-driver, npm): apt-get installs
# them when root, else this names them and stops
system-packages:
	scripts/system-packages

# what the page's browser tests inject (axe-core, pinned in tests/browser/package-lock.json);
# the browser itself is Debian's chromium (system-packages), never a download
AXE := tests/browser/node_modules/axe-core/axe.min.js
browser-packages: $(AXE)
$(AXE): tests/browser/package-lock.json | system-packages
	cd tests/browser && npm ci --no-audit --no-fund
	touch $@

# the whole suite (what CI runs), on two pytest-xdist workers: most integration tests wait on
# real workers, not on a core
test: install system-packages browser-packages
	$(VENV)/bin/pytest -q -n 2 --dist loadgroup --durations=20 $(TEST_ARGS)

# unit tests, each stage's router on FastStream's in-memory broker, the index contract: minutes
test-fast: install system-packages
	$(VENV)/bin/pytest -q tests/unit tests/contract $(TEST_ARGS)

# the four images (ingest, transcribe, embed, onebox) on a base made here from Debian's
# packages (debootstrap, as root); BASE_IMAGE=python:3.11-slim uses the public image instead.
# The engine is DOCKER_HOST's. See deploy/docker/build-images.sh
images:
	deploy/docker/build-images.sh

# the service containers, each in 512 MiB, index real speech against an embedded broker on the
# host network; a too small limit fails at start (tests/containers; `make test` leaves it out)
test-images: install images
	$(VENV)/bin/pytest -q tests/containers

# the index contract suite against the real Pinecone service (index PINECONE_INDEX_NAME,
# default streamscribe-contract, created when missing)
test-pinecone: install
	@test -n "$$PINECONE_API_KEY" || { echo "set PINECONE_API_KEY first"; exit 2; }
	$(VENV)/bin/pytest -q tests/contract -k pinecone-live

lint: install
	$(VENV)/bin/ruff check $(SOURCES) tests bench
	$(VENV)/bin/ruff format --check $(SOURCES) tests bench
	$(VENV)/bin/mypy

# Every bench writes its raw results to docs/bench/<name>.json and re-renders docs/benchmarks.md
# from those files (`python -m bench.render`). BENCH_ARGS=--long adds the 180-minute media
bench: install
	$(PY) -m bench.run $(BENCH_ARGS)

# the SQLite index at 200 000 passages (pre-filled once, kept in bench/out/index)
bench-index: install
	$(PY) -m bench.index

# one small box (run as root): `up --single-process` in a 512 MiB memory cgroup on 180 minutes
# of speech by URL plus a 60-minute local file, beside the multi-process stack; the embedded
# broker under 1 GB of steady traffic. BOX_ARGS="--soak 8" adds 8 hours of soak
bench-box: install
	$(PY) -m bench.box $(BOX_ARGS)

# transcribe workers sharing one media: 1 worker x 1 thread, 2 workers x 1 thread, 1 worker x 2
# threads on 30 minutes of speech, 2 alternating rounds (SCALE_ARGS="--minutes 3" for a quick check)
bench-scale: install
	$(PY) -m bench.scale $(SCALE_ARGS)

# this pipeline's transcriber (batch 1, 4 and 8), transcribe(path) and BatchedInferencePipeline
# (batch 8) on one file of held-out style speech, same threads and environment: audio s per s,
# peak RSS, WER (MINUTES=10 for a longer file)
MINUTES ?= 3
bench-transcribe: install
	$(PY) -m bench.transcribers --minutes $(MINUTES)

# `streamscribe search` against a running stack (2 minutes of speech indexed): whole command and
# the HTTP request alone
bench-api: install
	$(PY) -m bench.api

docs: install
	$(PY) -m streamscribe.cli.settings_table README.md
	$(PY) -m streamscribe.cli.api_docs docs

clean:
	rm -rf $(VENV) data

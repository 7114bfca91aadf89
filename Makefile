# `make demo` and `make test` are all a new user needs: both build the
# virtualenv from the lock file when it is missing or the lock changed.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export UV_PYTHON_DOWNLOADS := never
export PYTHONDONTWRITEBYTECODE := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: demo test test-fast install browser lock bench clean

install: $(STAMP)

# python3.10 resolves through pyenv because .python-version says 3.10.
$(STAMP): requirements.lock setup.py
	test -x $(PY) || python3.10 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$$(grep '^uv==' requirements.lock)"
	$(VENV)/bin/uv pip sync -q --python $(PY) requirements.lock
	$(VENV)/bin/uv pip install -q --python $(PY) --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mspipe demo --out demo_out

test: $(STAMP) browser
	$(PY) -m pytest tests

# The unit tier alone (pure code, well under a minute), for the edit-and-test loop.
test-fast: $(STAMP)
	$(PY) -m pytest tests/unit

# Debian's chromium and chromedriver for the browser tests, which selenium drives (it never
# downloads a browser or a driver). apt-get runs only when one of them is missing.
BROWSER_PACKAGES := chromium chromium-driver fonts-dejavu-core
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q -o DPkg::Lock::Timeout=300 && \
	  apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 $(BROWSER_PACKAGES); }

bench: $(STAMP)
	$(PY) bench/ingest.py
	$(PY) bench/train.py
	$(PY) bench/serving.py
	$(PY) bench/grpc_transport.py
	$(PY) bench/web.py
	$(PY) bench/histogram_kernel.py

# Regenerate the pinned lock from requirements.in (needs the registry).
lock:
	$(VENV)/bin/uv pip compile -q -p 3.10 requirements.in -o requirements.lock

clean:
	rm -rf $(VENV) demo_out bench_out

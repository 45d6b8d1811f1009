# Two commands for users:  `make run` (dashboard)  and  `make test` (whole test suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8501
APP_STAMP := $(VENV)/.tbd-app
DEV_STAMP := $(VENV)/.tbd-dev
TRAIN_STAMP := $(VENV)/.tbd-train

.PHONY: setup run test lint bench clean train-setup train-defaults browser pdf-libs

setup: $(APP_STAMP) pdf-libs

# Debian's Pango for WeasyPrint (PDF case reports). Needs root for apt-get; without it PDF export says what is
# missing (and its tests fail under CI=true).
pdf-libs:
	@if ! ldconfig -p 2>/dev/null | grep -q libpangoft2-1.0.so.0; then if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libpango-1.0-0 libpangoft2-1.0-0 \
		fonts-dejavu-core >/dev/null; \
	else echo "note: Debian libpango-1.0-0 and libpangoft2-1.0-0 are not installed; PDF reports will not work"; fi; fi

$(APP_STAMP): requirements.txt requirements-nodeps.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -r requirements-nodeps.txt
	$(PY) -c "import torch, torchvision, timm, streamlit, av, cv2, facenet_pytorch, pytorch_grad_cam, safetensors, h5py"
	@touch $@

$(DEV_STAMP): $(TRAIN_STAMP) requirements-dev.txt
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	@touch $@

# Training-only packages (tests of the training pipeline use them too).
train-setup: $(TRAIN_STAMP)

$(TRAIN_STAMP): $(APP_STAMP) requirements-train.txt
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-train.txt
	@touch $@

run: setup
	$(PY) -m core weights list
	$(PY) -m streamlit run Home.py --server.port $(PORT)

# Debian's Chromium for the real-browser test (never a browser downloaded by a tool). Needs root for apt-get;
# without it the browser test skips (and fails under CI=true).
browser:
	@command -v chromium >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "note: Debian chromium is not installed; the browser test will skip"; fi; }

test: $(DEV_STAMP) browser pdf-libs
	$(PY) -m pytest -q tests

lint: $(DEV_STAMP)
	$(PY) -m ruff check core app tests pages Home.py train

bench: setup
	$(PY) -m core bench

# Rebuild the shipped detectors from ../shared/data and evaluate them (about an hour on 2 CPU cores).
train-defaults: train-setup
	bash train/build_defaults.sh

clean:
	rm -rf $(VENV) .pytest_cache

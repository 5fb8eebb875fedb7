# Two entry points for a fresh Debian/Ubuntu machine with Python >= 3.10:
#   make demo   installs everything, then runs the plugin on the built-in sample
#   make test   installs everything, then runs lint, type checks and the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_out

# Xvfb and what Qt's xcb platform plugin needs (napari renders only under a real X server).
APT_PACKAGES := xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-cursor0 \
	libxkbcommon-x11-0 libxcb-image0 libxcb-render-util0 libxcb-shape0 libxcb-randr0 \
	libgl1 libegl1 libfontconfig1 libdbus-1-3

.PHONY: demo test setup system-deps lint clean

system-deps:
	@if ! command -v dpkg >/dev/null 2>&1; then \
		echo "not a Debian system: install Xvfb and Qt's xcb libraries yourself"; exit 0; fi; \
	missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	else echo "missing Debian packages (install them as root): $$missing"; exit 1; fi; \
	echo "installing Debian packages: $$missing"; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

setup: system-deps $(STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

demo: setup
	@if [ -n "$$DISPLAY" ]; then $(BIN)/napari-avan demo --out $(DEMO_OUT); \
	else xvfb-run -a -s "-screen 0 1600x1000x24" $(BIN)/napari-avan demo --headless --out $(DEMO_OUT); fi

clean:
	rm -rf $(VENV) $(DEMO_OUT) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache

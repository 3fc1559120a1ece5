# The README's two commands, each self-sufficient on a fresh machine:
#   make demo   set up .venv, build vlmkern, run `vlmkern demo`
#   make test   set up .venv, build vlmkern, run the test suite
# and `make stress`, the long sweeps.
# Re-running is fast: the venv is reused while requirements.txt is unchanged, and
# the CMake build directory (build/) recompiles only what changed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP_DEPS  := $(VENV)/.deps-installed
STAMP_BUILD := $(VENV)/.vlmkern-installed
SOURCES := $(shell find csrc python -type f \( -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' -o -name '*.py' -o -name '*.txt' \) 2>/dev/null) CMakeLists.txt pyproject.toml
# ninja parallelism for the C++/CUDA build
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: venv install test stress demo bench info clean

$(STAMP_DEPS): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements.txt
	touch $@

venv: $(STAMP_DEPS)

$(STAMP_BUILD): $(STAMP_DEPS) $(SOURCES)
	$(PIP) install --no-build-isolation --no-deps -q .
	touch $@

install: $(STAMP_BUILD)

test: install
	$(PY) -m pytest tests -q

# The long sweeps that `make test` samples (run before a release): every CUDA
# kernel under the emulator with eight more random schedules, and the
# sanitizer build on the full cases.
CUDASIM := build/cudasim
stress: install
	$(PY) tests/cudasim/build.py release
	$(PY) tests/cudasim/build.py sanitize
	$(CUDASIM)/release/cudasim_harness --size full --ftz both \
	  --schedules lockstep,reverse,warp-ahead,warp-ahead:0,random:11,random:12,random:13,random:14,random:15,random:16,random:17,random:18
	$(CUDASIM)/sanitize/cudasim_harness --size full --schedules lockstep,warp-ahead

demo: install
	$(VENV)/bin/vlmkern demo

bench: install
	$(VENV)/bin/vlmkern bench

info: install
	$(VENV)/bin/vlmkern info

clean:
	rm -rf build $(STAMP_BUILD)

# The README's two commands, each self-sufficient on a fresh machine:
#   make demo   set up .venv, build vlmkern, run `vlmkern demo`
#   make test   set up .venv, build vlmkern, run the test suite
# and `make stress` (the long sweeps) and `make sanitize` (ASan + UBSan).
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

.PHONY: venv install test stress sanitize demo bench info clean

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
	VLMKERN_FUZZ_EXAMPLES=10000 $(PY) -m pytest tests/test_randomized.py -q
	$(PY) -m pytest tests -q -m stress

# The CPU extension built apart with AddressSanitizer + UBSan (no CUDA), and the
# op tests run against it (the sanitizer runtimes preloaded into Python).
SAN := build/sanitize
SAN_TESTS := tests/test_attention_mass.py tests/test_topk_indices.py tests/test_gather_kept.py tests/test_frame_similarity.py \
             tests/test_dpc_knn.py tests/test_temporal_select.py \
             tests/test_w4a8_ops.py tests/test_bad_inputs.py tests/test_randomized.py tests/test_w4a8_model.py
sanitize: venv
	VLMKERN_SANITIZE=ON VLMKERN_CUDA=OFF $(PIP) install --no-build-isolation --no-deps -q --upgrade \
	  --target $(SAN)/site -C build-dir=$(SAN)/cmake .
	LD_PRELOAD="$$(g++ -print-file-name=libasan.so) $$(g++ -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0:handle_segv=0 VLMKERN_SANITIZED=1 PYTHONPATH=$(SAN)/site \
	  $(PY) -m pytest -p no:cacheprovider -q $(SAN_TESTS)

demo: install
	$(VENV)/bin/vlmkern demo

bench: install
	$(VENV)/bin/vlmkern bench

info: install
	$(VENV)/bin/vlmkern info

clean:
	rm -rf build $(STAMP_BUILD)

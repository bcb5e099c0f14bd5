# cloudmixer — the two commands: `make demo` and `make test`.
CARGO ?= cargo
.PHONY: deps deps-demo demo test capi-test lean-test fixtures bench peers lint doc

deps:
	@bash scripts/install-deps.sh

# what the demo needs only (no test servers): a first `make demo` does not build them
deps-demo:
	@bash scripts/install-deps.sh demo

fixtures: deps
	@bash scripts/make-fixtures.sh

# The command without `serve`, uploads and `bench` (cli/Cargo.toml features; about half the
# crates of the whole command), release code without debug info (profile `demo`).
# Records the seed side-by-side layout from two fixture clips for 10 s, switching to the
# picture-in-picture update at 5 s; writes out/demo.mp4 with the clips' sound mixed into an AAC
# track (330 Hz + 440 Hz tones, a click at each flash) and prints the summary ("audio: …").
demo: deps-demo
	$(CARGO) build --profile demo -p cloudmixer-cli --no-default-features --bin cloudmixer
	@mkdir -p out
	./target/demo/cloudmixer record --config fixtures/layouts/seed_side_by_side.json \
	  --input Usr1.-1=fixtures/clips/cam1_640x480_15.mp4 --input Usr2.-1=fixtures/clips/cam4_1280x720_30.mp4 \
	  --update 5=fixtures/layouts/seed_pip_update.json \
	  --storage out --output demo.mp4 --overwrite --duration 10 --events out/demo.events.jsonl

test: deps
	$(CARGO) test --all-targets
	$(CARGO) test --doc
	$(MAKE) capi-test
	$(MAKE) lean-test

# The library without its optional parts (README "Cargo features"): the lean build's unit tests
# (among them: `backend: gpu` and a `storageConfig` are refused with typed errors), then the
# library with only the GPU backend and with only the uploader. Same target dir as the rest.
lean-test:
	$(CARGO) test -p cloudmixer --no-default-features --lib
	$(CARGO) build -p cloudmixer --no-default-features --features gpu
	$(CARGO) build -p cloudmixer --no-default-features --features upload
	# the command as `make demo` builds it (no serve, uploads, bench)
	$(CARGO) check -p cloudmixer-cli --no-default-features --bin cloudmixer

# The C ABI: builds capi/ (cdylib + staticlib, include/cloudmixer.h by cbindgen), checks the
# header compiles as C++, builds and runs the C example (a 2 s recording with lent frames) and
# the C++ example (two lent cameras, RAII), checks the files they wrote, and runs the C example
# again under ASan/UBSan.
CC ?= cc
CXX ?= c++
capi-test:
	$(CARGO) build -p cloudmixer-capi
	echo '#include "cloudmixer.h"' | $(CXX) -x c++ -std=c++17 -fsyntax-only -Wall -Icapi/include -
	$(CC) -std=c11 -Wall -Wextra -Werror -o target/c-record examples/c/record.c \
	  -Icapi/include -Ltarget/debug -lcloudmixer_capi -lm -Wl,-rpath,$(CURDIR)/target/debug
	rm -rf target/c-record-out
	./target/c-record target/c-record-out
	test "$$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames \
	  -of csv=p=0 target/c-record-out/c/rec.mp4)" = 30
	# the C++ example: an RAII handle, exceptions, two lent cameras side by side
	$(CXX) -std=c++17 -Wall -Wextra -Werror -o target/cpp-record examples/cpp/record.cpp \
	  -Icapi/include -Ltarget/debug -lcloudmixer_capi -Wl,-rpath,$(CURDIR)/target/debug
	rm -rf target/cpp-record-out
	./target/cpp-record target/cpp-record-out
	test "$$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=width,height,nb_read_frames \
	  -of csv=p=0 target/cpp-record-out/cpp/rec.mp4)" = 640,240,30
	# again under AddressSanitizer + UBSan with leak detection (the C side instrumented; the
	# library's frees and copies go through the intercepted allocator and memcpy)
	$(CC) -std=c11 -g -fsanitize=address,undefined -fno-omit-frame-pointer -o target/c-record-asan \
	  examples/c/record.c -Icapi/include -Ltarget/debug -lcloudmixer_capi -lm \
	  -Wl,-rpath,$(CURDIR)/target/debug
	rm -rf target/c-record-asan-out
	ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=halt_on_error=1 \
	  ./target/c-record-asan target/c-record-asan-out

bench: deps
	$(CARGO) bench --bench compose

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy -p cloudmixer --no-default-features --lib -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc -p cloudmixer --no-deps --no-default-features

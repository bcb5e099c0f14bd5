# cloudmixer — the two commands: `make demo` and `make test`.
CARGO ?= cargo
.PHONY: deps demo test fixtures bench peers lint doc

deps:
	@bash scripts/install-deps.sh

fixtures: deps
	@bash scripts/make-fixtures.sh

# Records the seed side-by-side layout from two fixture clips for 10 s, switching to the
# picture-in-picture update at 5 s; writes out/demo.mp4 with the clips' sound mixed into an AAC
# track (330 Hz + 440 Hz tones, a click at each flash) and prints the summary ("audio: …").
demo: deps
	$(CARGO) build --release
	@mkdir -p out
	./target/release/cloudmixer record --config fixtures/layouts/seed_side_by_side.json \
	  --input Usr1.-1=fixtures/clips/cam1_640x480_15.mp4 --input Usr2.-1=fixtures/clips/cam4_1280x720_30.mp4 \
	  --update 5=fixtures/layouts/seed_pip_update.json \
	  --storage out --output demo.mp4 --overwrite --duration 10 --events out/demo.events.jsonl

test: deps
	$(CARGO) test --all-targets
	$(CARGO) test --doc

bench: deps
	$(CARGO) bench --bench compose

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps

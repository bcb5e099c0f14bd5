# cloudmixer — the two commands: `make demo` and `make test`.
CARGO ?= cargo
.PHONY: deps demo test fixtures bench peers lint doc

deps:
	@bash scripts/install-deps.sh

fixtures: deps
	@bash scripts/make-fixtures.sh

# Until the recording pipeline lands: snapshot PNGs of the seed layouts from the fixture clips.
demo: deps
	$(CARGO) build --release
	@mkdir -p out
	./target/release/cloudmixer snapshot --config fixtures/layouts/seed_side_by_side.json \
	  --input Usr1.-1=fixtures/clips/cam1_640x480_15.mp4@2 --input Usr2.-1=fixtures/clips/cam4_1280x720_30.mp4@2 \
	  --out out/seed_side_by_side.png
	./target/release/cloudmixer snapshot --config fixtures/layouts/seed_side_by_side.json \
	  --update fixtures/layouts/seed_pip_update.json \
	  --input Usr1.-1=fixtures/clips/cam4_1280x720_30.mp4@2 --input Usr2.-1=fixtures/clips/cam7_180x320_30.mp4@2 \
	  --out out/seed_pip.png
	@echo "demo: wrote out/seed_side_by_side.png and out/seed_pip.png"

test: deps
	$(CARGO) test --all-targets
	$(CARGO) test --doc

bench: deps
	$(CARGO) bench --bench compose

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps

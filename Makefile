# cycast: the two commands a newcomer needs are `make run` and `make test`.

CARGO ?= cargo

.PHONY: run test check lint unit build release bench clean

## Runs the server with the embedded default config, playing the demo playlist in ./music.
run:
	$(CARGO) run --release --bin cycast

## Everything CI checks: formatting, lints, unit and loopback integration tests.
test: lint
	./scripts/install-test-deps.sh
	./scripts/install-browser-deps.sh
	$(CARGO) test --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

build:
	$(CARGO) build

release:
	$(CARGO) build --release

## Micro benchmarks (criterion).
bench:
	$(CARGO) bench

clean:
	$(CARGO) clean

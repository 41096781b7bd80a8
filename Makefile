# cycast: the two commands a newcomer needs are `make run` and `make test`.

CARGO ?= cargo

.PHONY: run test lint build release bench clean

## Runs the server with the embedded default config, playing the demo playlist in ./music.
run:
	$(CARGO) run --release --bin cycast

## Everything CI checks: formatting, lints, unit and loopback integration tests.
test: lint
	./scripts/install-test-deps.sh
	./scripts/install-browser-deps.sh
	./scripts/install-interop-deps.sh
	$(CARGO) test --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

build:
	$(CARGO) build

release:
	$(CARGO) build --release

## Micro benchmarks (criterion), then the end-to-end benchmark on loopback, beside Icecast 2
## (installed if missing; without it cycast runs alone). Sizes: BENCH_* variables, docs/benchmarks.md.
bench:
	-./scripts/install-bench-deps.sh
	$(CARGO) bench
	./scripts/bench.sh

clean:
	$(CARGO) clean

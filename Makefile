# cycast: the two commands a newcomer needs are `make run` and `make test`.

CARGO ?= cargo

.PHONY: run test lint build release bench clean fuzz

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

## Micro benchmarks (criterion), then the end-to-end benchmark on loopback, beside Icecast 2 and,
## for HTTPS, nginx (installed if missing with openssl; without them cycast runs alone). Sizes:
## BENCH_* variables, docs/benchmarks.md.
bench:
	-./scripts/install-bench-deps.sh
	$(CARGO) bench
	./scripts/bench.sh

clean:
	$(CARGO) clean

## Fuzzes the parsers (fuzz/fuzz_targets/) for FUZZ_SECONDS each with cargo-fuzz, installed if
## missing; RUSTC_BOOTSTRAP lets its nightly-only flags run on stable. A crash stops here and
## its input is saved under fuzz/artifacts/<target>/. Not part of `make test`.
## Without a working sanitizer: make fuzz FUZZ_FLAGS='--sanitizer none'.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= http_head mp3_framer icy_block config admin_query tls_first_bytes
FUZZ_FLAGS ?=

fuzz:
	$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		case $$t in mp3_framer) len=24576;; icy_block) len=10000;; config) len=8192;; *) len=4096;; esac; \
		mkdir -p corpus/$$t && \
		if [ $$t = config ]; then cp ../config.hcl corpus/config/default.hcl; fi && \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $(FUZZ_FLAGS) $$t corpus/$$t seeds/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -max_len=$$len -print_final_stats=1 || exit 1; \
	done

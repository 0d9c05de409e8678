# Braid — hybrid retrieval backend. `make run` serves the whole stack; `make test` checks it.
# Everything fetched or created locally lives under .braid/ (git-ignored).

STACK := deploy/scripts/stack.sh

.PHONY: run test bench eval setup build release lint fmt pg-start pg-stop env clean-state help deploy-check deps-check loadtest loadtest-restarts loadtest-scale soak backup restore basebackup receipts fuzz

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

run: ## fetch PostgreSQL+pgvector and the model, build, start all five services, serve until Ctrl-C (BRAID_PROMETHEUS=1 adds Prometheus)
	@$(STACK) run

test: ## same set-up, then cargo fmt --check, dependency checks (cargo shear, cargo deny), clippy -D warnings and every test
	@$(STACK) test

receipts: ## re-see every test of tests/RECEIPTS.md fail on its mutation (tests/receipts/*.patch) in a scratch worktree, then pass (RECEIPTS_ONLY=pattern)
	@deploy/scripts/receipts.sh

deploy-check: ## promtool rules + tests, helm lint/render + kubernetes-validate, hadolint, build contexts vs .dockerignore, compose config
	@$(STACK) deploy-check

fuzz: ## cargo-fuzz targets (nightly; cargo-fuzz installed once into .braid/tools): extraction, chunking, filters, tokens, page tokens, FUZZ_SECONDS=60 each
	@deploy/scripts/fuzz.sh

deps-check: ## unused dependencies (cargo shear) + cargo deny check (RustSec snapshot, licences, bans, sources), offline; part of `make test`
	@$(STACK) deps-check

bench: ## embedding speed (BENCH_REFERENCE=1 adds sentence-transformers) + SciFact ingest (BENCH_DOCS=300), the text leg on OpenSearch vs Tantivy → BENCHMARKS.md
	@$(STACK) bench

eval: ## SciFact nDCG@10 / Recall@10 / latency for hybrid, vector and text (whole corpus) → BENCHMARKS.md
	@$(STACK) eval

loadtest: ## on the `make run` stack (started if not running) + SciFact: 500 clients, 100 req/s, rate sweep, load during ingest → BENCHMARKS.md (LOADTEST_SECONDS=60)
	@$(STACK) loadtest

loadtest-restarts: ## only the restart scenarios of `make loadtest` (one of two gateways, text-search, PostgreSQL restarted under load) → BENCHMARKS.md
	@$(STACK) loadtest-restarts

loadtest-scale: ## >= 100,000 chunks (SciFact under 9 tenants): ingest and HNSW build time, memory per service, hybrid p50/p99 → BENCHMARKS.md
	@LOADTEST_SCALE=1 $(STACK) loadtest

soak: ## the `make run` stack for SOAK_MINUTES=30 at half its measured capacity (SOAK_RATE=N) + ingest trickle; fails on RSS/fd/thread/connection/queue growth or any error → BENCHMARKS.md
	@$(STACK) soak

backup: ## pg_dump of the database (verified, row counts in a manifest) into .braid/backups/<time>/, kept BRAID_BACKUP_KEEP_DAYS=30 days (newest BRAID_BACKUP_KEEP=7 always)
	@deploy/scripts/backup.sh backup

restore: ## restore the newest backup (or BACKUP=<dir>) into the database; FORCE=1 replaces a non-empty one
	@deploy/scripts/backup.sh restore $(BACKUP) $(if $(FORCE),--force)

basebackup: ## pg_basebackup of the whole cluster into .braid/basebackups/<time>/ (point-in-time recovery with BRAID_PG_ARCHIVE=1)
	@deploy/scripts/backup.sh basebackup

setup: ## fetch PostgreSQL+pgvector, the model and grpcurl; start PostgreSQL
	@$(STACK) setup

build: ## debug build of the workspace
	cargo build --workspace --all-targets --locked

release: ## release binaries (target/release/braid-* and braidctl)
	cargo build --release --bins --locked

lint: ## fmt check and clippy
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

fmt: ## format the code
	cargo fmt --all

pg-start: ## start the local PostgreSQL
	@$(STACK) pg-start

pg-stop: ## stop the local PostgreSQL
	@$(STACK) pg-stop

env: ## print the environment the services and tests use
	@$(STACK) env

clean-state: pg-stop ## delete .braid/ (database, index, downloads)
	rm -rf .braid

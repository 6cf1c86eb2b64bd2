# Floodgate — the two commands a new user needs, and the benchmark.
.PHONY: run test bench services services-down fmt lint

run:            ## app with demo data + operator in local --manifests mode
	bash scripts/run.sh

test:           ## every test, against real PostgreSQL and Redis (started if needed)
	bash scripts/test.sh

bench:          ## release benchmarks against same-run ceilings → docs/benchmarks/
	bash scripts/bench.sh

services:       ## only start (or find) PostgreSQL and Redis
	bash scripts/services.sh up

services-down:  ## stop the private PostgreSQL and Redis started in .data/
	bash scripts/services.sh down

fmt:
	cargo fmt --all

lint:
	cargo clippy --workspace --all-targets -- -D warnings

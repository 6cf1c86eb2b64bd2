# Floodgate — the two commands a new user needs, and the benchmark.
.PHONY: run test images bench soak services services-down cluster cluster-down cluster-test crds fmt lint

run:            ## app with demo data + operator in local --manifests mode
	bash scripts/run.sh

test:           ## every test, against real PostgreSQL and Redis (started if needed)
	bash scripts/test.sh

images:         ## OCI image tarballs of the three binaries, no Docker engine (release build) → .data/images/
	bash scripts/images.sh

bench:          ## release benchmarks against same-run ceilings → docs/benchmarks/
	bash scripts/bench.sh

soak:           ## 20 min beyond capacity (SOAK_SECONDS), RSS each second, PASS/FAIL vs the chart limit
	bash scripts/soak.sh

services:       ## only start (or find) PostgreSQL and Redis
	bash scripts/services.sh up

services-down:  ## stop the private PostgreSQL and Redis started in .data/
	bash scripts/services.sh down

cluster:        ## a real Kubernetes control plane on 127.0.0.1 (built from Go modules once, cached)
	bash scripts/control-plane.sh up
	@bash scripts/control-plane.sh env

cluster-down:   ## stop the control plane that `make cluster` started
	bash scripts/control-plane.sh down

cluster-test:   ## only the tests against the control plane (tests/cluster)
	bash scripts/cluster-tests.sh

crds:           ## regenerate crds/*.yaml from the Rust types and copy them into the chart
	bash scripts/crds.sh

fmt:
	cargo fmt --all

lint:
	cargo clippy --workspace --all-targets -- -D warnings

# pp — one target per operation. `make` alone lists them.
#
# The newcomer's path is two commands: `make run` (the whole system) and `make test`.
# Both prepare the machine first (`make setup`: services, database, migrations). Every target
# installs the tools it needs itself, with scripts/install.sh (idempotent: present ones are kept).

SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: help setup build migrate db-status db-reset api producer consumer run test test-repeat contract bench-api bench-queue bench-latency bench-waiters bench-dashboard seed-big screenshots bench-overload chaos cluster-chaos cluster-up cluster-status cluster-down cli-run-01 cli-run-02 compose-check lint fmt ci clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[1m%-15s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: ## Start (or install) PostgreSQL, RabbitMQ and Redis, create and migrate the database
	@scripts/setup.sh

build: ## Build every crate (debug)
	@scripts/install.sh libpq
	$(CARGO) build --workspace --all-targets

migrate: ## Create the database if missing and apply pending migrations
	@scripts/install.sh libpq
	$(CARGO) run --quiet -p pp_storage -- migrate

db-status: ## Show which migrations the database has
	@scripts/install.sh libpq
	$(CARGO) run --quiet -p pp_storage -- status

db-reset: ## Delete every row: revert and re-apply all migrations (asks for nothing: be sure)
	@scripts/install.sh libpq
	$(CARGO) run --quiet -p pp_storage -- reset --yes

api: ## Run the REST API (release build), migrating the database first
	@scripts/install.sh libpq
	$(CARGO) build --release -p pp_backend_api -p pp_storage
	target/release/pp_storage migrate
	target/release/pp_backend_api

producer: ## Run task_producer (release build): one random demand every 4 s, until Ctrl-C
	@scripts/install.sh libpq
	$(CARGO) build --release -p task_producer
	target/release/task_producer run

consumer: ## Run task_consumer (release build) with its sweeper, migrating the database first
	@scripts/install.sh libpq
	$(CARGO) build --release -p task_consumer -p pp_storage
	target/release/pp_storage migrate
	target/release/task_consumer run

run: setup ## Run the whole system: services, database, then API + consumer + producer (Ctrl-C stops all)
	@scripts/run.sh

test: setup ## Run every test against the real services (runs setup first; installs Chromium for the browser tests and nginx for the proxy tests)
	@scripts/install.sh chromium nginx
	@scripts/test.sh

test-repeat: setup ## Run every test N times in a row (N=5), stopping at the first failure (for a test that fails now and then)
	@scripts/install.sh chromium nginx
	@scripts/test-repeat.sh $(or $(N),5)

contract: setup ## Fuzz the API against its own OpenAPI document (schemathesis, every check); fails on any mismatch
	@scripts/install.sh schemathesis
	@scripts/contract.sh

bench-api: setup ## Benchmark the API against pgbench on the same statements (installs wrk and pgbench if missing)
	@scripts/install.sh wrk pgbench
	@scripts/bench-api.sh

bench-queue: setup ## Benchmark the pipeline: publish rate, consumer rate, pgbench on the consumer's transaction, and scaling on a three-node cluster beside the broker's own ceiling (classic and quorum, 1, 2, 4 consumers)
	@scripts/install.sh pgbench
	@scripts/bench-queue.sh

bench-latency: setup ## Time from request to done work for POST /work and POST /work/demand at light load (p50, p90, p99, from the database's clocks)
	@scripts/bench-latency.sh

bench-waiters: setup ## 10,000 requests waiting (Prefer: wait) on one work: the API's memory while they wait, and how fast all are answered once it is done
	@scripts/bench-waiters.sh

bench-dashboard: setup ## Seed a million works and three million events, time every dashboard query (< 50 ms each), and GET with and without 5 dashboard tabs
	@scripts/install.sh wrk
	@scripts/bench-dashboard.sh

seed-big: setup ## Seed pp_bench_dashboard with a million works and three million events (SQL only) and leave it in place
	@PP_BENCH_SEED_ONLY=1 scripts/bench-dashboard.sh

screenshots: setup ## Photograph the dashboard of a live pipeline (light and dark, laptop and phone) into docs/
	@scripts/install.sh chromium
	$(CARGO) run --quiet -p pp_backend_api --example screenshots -- docs

bench-overload: setup ## A thousand connections against a database slowed on purpose, with load shedding and without (installs wrk if missing)
	@scripts/install.sh wrk
	$(CARGO) build --release -p pp_backend_api --bins --example overload
	ulimit -n "$$(ulimit -Hn)" && target/release/examples/overload

cluster-up: ## Start a three-node RabbitMQ cluster beside the shared broker (ports 5681-5683; prints its AMQP_URL)
	@scripts/cluster.sh up

cluster-status: ## Each node of the local RabbitMQ cluster: running or not, its ports, the cluster it sees
	@scripts/cluster.sh status

cluster-down: ## Stop the local RabbitMQ cluster and remove its files
	@scripts/cluster.sh down

chaos: setup ## The fault run: SIGKILLs, broker, database and Redis restarts under load; prints lost / duplicated counts (restarts the shared services: not part of make test)
	$(CARGO) build --release -p pp_backend_api -p task_consumer -p task_producer
	$(CARGO) run --release -p pp_backend_api --example chaos

cluster-chaos: setup ## The fault run on a three-node cluster of its own with quorum queues: leader and node SIGKILLs, a frozen node, a rolling restart; prints lost / duplicated counts and the longest stall (CHAOS_ARGS=--short: one leader kill)
	$(CARGO) build --release -p pp_backend_api -p task_consumer -p task_producer
	$(CARGO) run --release -p pp_backend_api --example chaos -- --cluster $(CHAOS_ARGS)

cli-run-01: ## Show cli_01 driving pp over the API and straight from the database (make api in another shell)
	@scripts/cli-run-01.sh

cli-run-02: ## Show cli_02's raw HTTP/1.1 exchanges against a running API (make api in another shell)
	@$(CARGO) build --quiet -p cli_02
	@target/debug/cli_02 --addr $(or $(PP_CLI_ADDR),127.0.0.1:3000) /healthz >/dev/null 2>&1 \
		|| { echo "cli-run-02: no API answers on $(or $(PP_CLI_ADDR),127.0.0.1:3000): start it with 'make api'" >&2; exit 1; }
	target/debug/cli_02 --addr $(or $(PP_CLI_ADDR),127.0.0.1:3000) --raw -X POST -d '{"add_up_to": 4}' /work
	@echo
	target/debug/cli_02 --addr $(or $(PP_CLI_ADDR),127.0.0.1:3000) '/work/search?work_code=api&limit=2'
	-target/debug/cli_02 --addr $(or $(PP_CLI_ADDR),127.0.0.1:3000) /work/abc

compose-check: ## Validate docker-compose.yml without a Docker engine (installs Debian's docker-compose if missing)
	@scripts/install.sh docker-compose
	docker-compose -f docker-compose.yml config -q

lint: ## Check formatting and clippy (warnings are errors)
	@scripts/install.sh libpq
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

ci: lint test compose-check contract ## What CI runs (.ci/run): lint, setup and the tests, the compose file, the API's contract

clean: ## Remove build output
	$(CARGO) clean

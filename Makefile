# pgcluster: `make demo` runs a local three-node cluster, `make test` runs every test.
PREFIX ?= /usr/local
SWIFT ?= swift
SPEC ?= examples/local.yaml

.PHONY: all deps toolchain build release dist test demo demo-down bench install templates clean

all: build

# Everything the tests, the demo and the benchmarks use (PostgreSQL, etcd, sshd, ...).
deps:
	@scripts/ensure-deps.sh

# Only what building needs: the Swift toolchain, libpq-dev and pkg-config.
toolchain:
	@scripts/ensure-deps.sh --build

build: toolchain
	$(SWIFT) build

release: toolchain
	$(SWIFT) build -c release

# A release build with the Swift runtime linked in (libpq stays shared) and
# dist/pgcluster_VERSION_ARCH.deb: the binary, the pgcluster-watch@ unit, bash and zsh
# completions, the man page. See scripts/dist.sh.
dist: toolchain
	SWIFT=$(SWIFT) scripts/dist.sh

# Unit tests need no server; integration tests start real PostgreSQL 15 servers
# through pgcluster itself, on ports 21000-21999, in temporary folders, test hosts in
# network namespaces, etcd, and (as root) the container engine for the compose tests,
# started and stopped by scripts/run-tests.sh. It ends with the slowest suites.
test: deps
	SWIFT=$(SWIFT) scripts/run-tests.sh

demo: deps release
	scripts/demo.sh $(SPEC)

demo-down: release
	.build/release/pgcluster destroy --yes -f $(SPEC)

# Benchmarks print figures (no timed assertions): init against the same steps by hand,
# the scale curve (init and failover with 2, 4 and 8 standbys),
# failover, median of several runs with each step's time; backend ssh beside local on three
# test hosts; watch (automatic failover after kill -9 and SIGSTOP under 4 writers); and
# switchover under writers (command time, longest gap between writes); init, failover and
# switchover on compose containers beside local processes (the engine
# of scripts/compose-engine.sh, started here when it is not running; `scripts/compose-engine.sh
# down` stops it).
bench: deps release
	scripts/bench-init.sh
	scripts/bench-scale.sh
	scripts/bench-failover.sh
	scripts/bench-tls.sh
	scripts/bench-ssh.sh
	scripts/bench-watch.sh
	scripts/bench-switchover.sh
	scripts/bench-haproxy.sh
	scripts/bench-apply.sh
	scripts/bench-backup.sh
	scripts/compose-engine.sh up
	scripts/bench-compose.sh

install: release
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 .build/release/pgcluster $(DESTDIR)$(PREFIX)/bin/pgcluster

# Re-embed templates/ into the binary after editing them.
templates:
	scripts/embed-templates.sh

clean:
	rm -rf .build dist

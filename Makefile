# kbisect: `make demo` runs the embedded default end to end, `make test` the
# whole suite. Both install what they need first (scripts/setup.sh).
GO      ?= go
BIN     := bin
AGENT   := $(BIN)/kbisect-agent
KBISECT := $(BIN)/kbisect
# Tests boot real guests; a missing QEMU or kernel fails them instead of
# skipping them.
export KBISECT_REQUIRE_VM := 1

.PHONY: all build setup check test test-lava test-xen demo bench-run bench-xen bench-throughput bench-writesizes bench-build bench-sim bench-esp bench-boot bench-netlab bench-vmimage lint clean verify-old verify-ladder seed-replay

all: build

setup:
	./scripts/setup.sh

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(AGENT) ./cmd/kbisect-agent
	$(GO) build -buildvcs=auto -o $(KBISECT) ./cmd/kbisect

# staticcheck from the Go module proxy, pinned to a release that knows
# this Go.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# check runs the tests of the packages that need no VM, no root, no kernel
# tree and no LAVA (the search, the journal, the runners, the wire
# analysis, the protocols, the import order): about a minute, for every
# edit. `make test` runs everything.
PURE := ./bisect/ ./bisect/exectest/ ./bisect/kernel/ ./bisect/sim/ ./internal/fsutil/ ./internal/gitrepo/ \
	./internal/statusline/ ./internal/cliflags/ ./internal/jsondur/ \
	./internal/tailbuf/ ./internal/bisectrun/ ./internal/procgroup/ ./internal/stages/ ./testcases/esp/ \
	./testcases/proto/ ./testcases/agent/ ./vm/xenctl/ ./cmd/kbisect-dom0/ ./cmd/kbisect-agent/
check:
	KBISECT_REQUIRE_VM= $(GO) test -short -count=1 $(PURE)

test: setup build lint test-lava
	$(GO) test -count=1 -p 2 -timeout 80m ./...

# test-lava starts a throwaway LAVA instance on this machine (installing
# Debian's LAVA if needed), runs the LAVA executor's tests against it, and
# stops it whatever happens. The ./... run of `make test` then skips them.
# LAVA's own user must be able to reach the state directory.
LAVA_STATE ?= /tmp/kbisect-lava-test
test-lava: build
	@./scripts/lava-instance.sh stop $(LAVA_STATE); rm -rf $(LAVA_STATE)
	@trap './scripts/lava-instance.sh stop $(LAVA_STATE)' EXIT INT TERM; \
	  ./scripts/lava-instance.sh start $(LAVA_STATE) && \
	  set -a && . $(LAVA_STATE)/env && set +a && \
	  KBISECT_REQUIRE_LAVA=1 $(GO) test -count=1 -p 1 -timeout 30m -v ./lava/

# The pair as Xen domUs in a nested Xen host (also part of `make test`).
test-xen: setup build
	$(GO) test -count=1 -p 1 -timeout 60m -run 'TestXen|TestOldKernelsXen|TestOldKernelXenPVH' -v ./testcases/

demo: setup build
	$(KBISECT) demo

bench-run: setup build
	$(GO) test -run '^$$' -bench BenchmarkRun -benchtime 1x -timeout 30m ./testcases/

bench-xen: setup build
	$(GO) test -run '^$$' -bench BenchmarkXen -benchtime 1x -timeout 30m ./testcases/

# What one run tests per minute: ESP Mbit/s, packets/s and the ratio to plain
# TCP, QEMU and Xen, direct and NAT, one and four streams, 6.1 and 3.14.5
# (24 runs of 20 s, each with its boot; KBISECT_BENCH_ONLY=SUBSTRING runs
# the rows whose name has it, e.g. 6.1/qemu/direct/1stream;
# KBISECT_BENCH_BESIDE=build runs each row beside a kernel build).
bench-throughput: setup build
	$(GO) test -run '^$$' -bench BenchmarkThroughput -benchtime 1x -timeout 90m ./testcases/

# Does --write-sizes vary find a size-dependent corruption sooner? The demo's
# bad commit with its bug confined to one payload length in 256, fixed and
# varied writes, KBISECT_BENCH_RUNS (default 4) runs of up to a minute each.
bench-writesizes: setup build
	$(GO) test -run '^$$' -bench BenchmarkWriteSizes -benchtime 1x -timeout 60m ./internal/demo/

bench-build: setup build
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./kbuild/

bench-sim: build
	$(KBISECT) sim --commits 1024 --trials 400
	$(KBISECT) sim --commits 1024 --trials 400 --strategies bayes,oracle,oracle-stop,oracle-plan

bench-esp:
	$(GO) test -run '^$$' -bench . -cpu 1 ./testcases/esp/

bench-boot: setup build
	$(GO) test -run '^$$' -bench . -benchtime 5x ./vm/

bench-netlab:
	$(GO) test -run '^$$' -bench . ./netlab/

bench-vmimage: build
	$(GO) test -run '^$$' -bench . -benchtime 3x ./vmimage/

# Build an old tree's kernel (TREE=git repo, REV=commit, default HEAD) and run
# natt-esp on a pair of it and a mixed pair with a 6.1 receiver.
verify-old:
	@./scripts/verify-old.sh "$(TREE)" "$(REV)"

# The release ladder: DIR holds kernel trees (tarballs, tree directories,
# git repositories, or REPO@REV entries in DIR/sources). It makes (once) a
# ladder repository of them, builds every release with tinyconfig and
# defconfig (each with xen-guest) and runs natt-esp on a QEMU pair and a
# Xen PV pair of each, then prints the matrix (LADDER_REVS="v3.0.0 v3.2.4"
# limits it to those releases). Cells are kept in $(LADDER_CELLS): a second
# run goes on where the first stopped.
LADDER_REPO  ?= $(HOME)/.cache/kbisect/ladder.git
LADDER_CELLS ?= $(HOME)/.cache/kbisect/ladder-cells.jsonl
LADDER_TAGS  ?= v*
LADDER_REVS  ?=
verify-ladder: setup build
	@test -n "$(DIR)" || { echo "verify-ladder: give DIR=a directory of kernel trees"; exit 2; }
	@test -d "$(LADDER_REPO)" || $(KBISECT) ladder $(DIR) $$(cat $(DIR)/sources 2>/dev/null) -o $(LADDER_REPO)
	$(KBISECT) matrix --repo $(LADDER_REPO) $(if $(LADDER_REVS),$(foreach r,$(LADDER_REVS),--rev $(r)),--tags '$(LADDER_TAGS)') --config tinyconfig --config defconfig \
	    --hypervisors qemu,xen --duration 20s -o $(LADDER_CELLS)

clean:
	rm -rf $(BIN)
	find . -name '*.test' -type f -delete

# The README's "The 2014 report, reproduced", end to end (hours of nested
# Xen: a benchmark, not part of make test). LADDER is a release ladder
# repository with the releases up to v5.10.7 for the bisections; without it
# only the table and the validations on 3.14.5 run.
seed-replay: setup build
	./scripts/seed-replay.sh $(LADDER)

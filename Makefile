# kbisect: `make demo` runs the embedded default end to end, `make test` the
# whole suite. Both install what they need first (scripts/setup.sh).
GO      ?= go
BIN     := bin
AGENT   := $(BIN)/kbisect-agent
KBISECT := $(BIN)/kbisect
# Tests boot real guests; a missing QEMU or kernel fails them instead of
# skipping them.
export KBISECT_REQUIRE_VM := 1

.PHONY: all build setup test test-xen demo bench-run bench-xen bench-build bench-sim bench-esp bench-boot bench-netlab bench-vmimage lint clean

all: build

setup:
	./scripts/setup.sh

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(AGENT) ./cmd/kbisect-agent
	$(GO) build -o $(KBISECT) ./cmd/kbisect

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

test: setup build lint
	$(GO) test -count=1 -p 2 -timeout 80m ./...

# The pair as Xen domUs in a nested Xen host (also part of `make test`).
test-xen: setup build
	$(GO) test -count=1 -p 1 -timeout 30m -run 'TestXen' -v ./testcases/

demo: setup build
	$(KBISECT) demo

bench-run: setup build
	$(GO) test -run '^$$' -bench BenchmarkRun -benchtime 1x -timeout 30m ./testcases/

bench-xen: setup build
	$(GO) test -run '^$$' -bench BenchmarkXen -benchtime 1x -timeout 30m ./testcases/

bench-build: setup build
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./kbuild/

bench-sim: build
	$(KBISECT) sim --commits 1024 --trials 400

bench-esp:
	$(GO) test -run '^$$' -bench . -cpu 1 ./testcases/esp/

bench-boot: setup build
	$(GO) test -run '^$$' -bench . -benchtime 5x ./vm/

bench-netlab:
	$(GO) test -run '^$$' -bench . ./netlab/

bench-vmimage: build
	$(GO) test -run '^$$' -bench . -benchtime 3x ./vmimage/

clean:
	rm -rf $(BIN)

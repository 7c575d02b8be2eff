# CrucibleTelemetry — build, run, test and benchmark.
GO          ?= go
BINARY      := crucible-telemetry
VERSION     := $(shell cat VERSION)
REVISION    := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
BRANCH      := $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
VERSION_PKG := github.com/prometheus/common/version
LDFLAGS     := -X $(VERSION_PKG).Version=$(VERSION) -X $(VERSION_PKG).Revision=$(REVISION) \
               -X $(VERSION_PKG).Branch=$(BRANCH) -X $(VERSION_PKG).BuildUser=$(shell whoami)@$(shell hostname) \
               -X $(VERSION_PKG).BuildDate=$(shell date -u +%Y%m%d-%H:%M:%S)
ARGS        ?=

.PHONY: all build run demo test test-short vet fuzz bench bench-go bench-load clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BINARY) .

## run: build and start the sidecar on :9477 with storage in ./data (extra flags: make run ARGS='...')
run: build
	./$(BINARY) serve --storage.path=data $(ARGS)

## demo: stream a control and a treatment experiment into the sidecar that make run started (DEMO_ARGS='--rate=50 ...')
DEMO_ARGS ?=
demo: build
	./$(BINARY) demo $(DEMO_ARGS)

## test: every test, with the race detector
test: vet
	$(GO) test -race -count=1 ./...

## test-short: the quick tier: no race detector, and the slow end-to-end tests skipped
test-short:
	$(GO) test -short -count=1 ./...

vet:
	$(GO) vet ./...

## fuzz: run each fuzz target for FUZZTIME (default 30s); a failing input lands in the package's testdata/fuzz
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./event -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./event -run '^$$' -fuzz '^FuzzSplit$$' -fuzztime $(FUZZTIME)
	$(GO) test ./event -run '^$$' -fuzz '^FuzzFastPath$$' -fuzztime $(FUZZTIME)
	$(GO) test ./event -run '^$$' -fuzz '^FuzzFastPathReused$$' -fuzztime $(FUZZTIME)
	$(GO) test ./tsdbstore -run '^$$' -fuzz '^FuzzScanSegment$$' -fuzztime $(FUZZTIME)
	$(GO) test ./tsdbstore -run '^$$' -fuzz '^FuzzPointsNames$$' -fuzztime $(FUZZTIME)
	$(GO) test ./tsdbstore -run '^$$' -fuzz '^FuzzPointsExtra$$' -fuzztime $(FUZZTIME)
	$(GO) test ./evalstore -run '^$$' -fuzz '^FuzzOpen$$' -fuzztime $(FUZZTIME)
	$(GO) test ./otlp -run '^$$' -fuzz '^FuzzTraces$$' -fuzztime $(FUZZTIME)
	$(GO) test ./otlp -run '^$$' -fuzz '^FuzzLogs$$' -fuzztime $(FUZZTIME)
	$(GO) test ./remotewrite -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./remotewrite -run '^$$' -fuzz '^FuzzPositions$$' -fuzztime $(FUZZTIME)
	$(GO) test ./promsource -run '^$$' -fuzz '^FuzzAnswer$$' -fuzztime $(FUZZTIME)
	$(GO) test ./promsource -run '^$$' -fuzz '^FuzzRemoteRead$$' -fuzztime $(FUZZTIME)

## bench: Go micro-benchmarks, then the load generator against a fresh sidecar
bench: bench-go bench-load

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

LOAD_DURATION ?= 60s
bench-load: build
	./scripts/bench-load.sh $(LOAD_DURATION)

clean:
	rm -f $(BINARY)

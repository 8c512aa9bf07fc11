# The commands a newcomer and CI run. `make test` is the test command the README
# gives and .ci/run calls; each target does its own set-up.

GO      ?= go
PKGS    ?= ./...
BENCHES ?= BenchmarkParse$$|BenchmarkScanFloor
COUNT   ?= 10

.PHONY: all build run test setup bench fuzz lint conformance

all: build

build:
	$(GO) build -o spinebridge ./cmd/spinebridge

# The engine on its embedded defaults: MLLP :2575, HTTP :8080, admin :8081, ./data.
run:
	$(GO) run ./cmd/spinebridge serve

setup:
	@bash .ci/setup

# The race detector turns on checkptr, which libxml2's Go bindings trip in their
# own pointer arithmetic over C memory (clib.XMLXPathRegisterNS); it stays on
# for every other package.
RACEFLAGS ?= -race -gcflags=github.com/lestrrat-go/libxml2/...=-d=checkptr=0

test: setup
	$(GO) test $(RACEFLAGS) -count=1 $(PKGS)

# Parser benchmarks beside the scan floor, medians over COUNT runs, with the ratio.
bench:
	$(GO) test -run '^$$' -bench '$(BENCHES)' -benchmem -count $(COUNT) ./adapters/hl7v2 | tee bench.out | bash .ci/benchtable

# Fuzz every fuzz target for FUZZEXECS executions each (a count, not a time:
# see .ci/fuzz).
FUZZEXECS ?= 200000x
fuzz:
	bash .ci/fuzz $(FUZZEXECS)

lint:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet $(PKGS)

# The conversion suite over the public corpus: every bundle of ours valid R4 under
# google/fhir/go and under a second, independent validator, and at least FLOOR
# percent of the expected clinical facts present. The floor only ever goes up.
CORPUS   ?= ../shared/corpora/ms-fhir-converter
FLOOR    ?= $(shell cat conformance/floor)
CONF_OUT ?= $(or $(TMPDIR),/tmp)/spinebridge-conformance
conformance: build
	rm -rf $(CONF_OUT) && mkdir -p $(CONF_OUT)
	./spinebridge conformance run $(CORPUS) --floor $(FLOOR) --write-dir $(CONF_OUT)/bundles \
		--junit $(CONF_OUT)/report.xml --json $(CONF_OUT)/report.json
	../shared/tools/fhir-validate/run.sh $$(find $(CONF_OUT)/bundles -name '*.json' | sort)

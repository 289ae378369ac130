# gobucardo — build, test, lint and demo. `make help` lists the targets.

GO        ?= go
BIN       := $(CURDIR)/bin
TOOLS     := $(BIN)/tools
GOLANGCI_LINT_VERSION := v2.15.0
GOFLAGS_TEST ?=
TEST_TIMEOUT ?= 30m
BENCH_TIMEOUT ?= 60m

.PHONY: all help build test test-short bench lint fmt demo clean tools proto

all: build

help:
	@echo "make demo   - start local PostgreSQL clusters, install the catalog, configure a sync, show it"
	@echo "make test   - every test: unit and integration against real PostgreSQL, with -race"
	@echo "make bench  - measure bulk replication against raw COPY, pgbench TPS with capture, mcp RSS; print a table"
	@echo "              (BENCH_ROWS=100000,1000000, BENCH_PGBENCH_SECONDS=30 and BENCH_TWO_ROWS=200000 size it)"
	@echo "              (BENCH_PART_ROWS=1000000: partitioned table, 12 monthly partitions, vs a plain one)"
	@echo "              (BENCH_OUTAGE_SECONDS=60: one target of three down under pgbench; B and C lag, D's catch-up)"
	@echo "make build  - build bin/mcp, bin/controller, bin/kid and the example plugins in bin/plugins/"
	@echo "make lint   - gofmt, go vet, golangci-lint (.golangci.yml: staticcheck, errcheck, depguard keeping the layering, ...)"
	@echo "make proto  - regenerate the gRPC code of pkg/ipc and pkg/sdk from their .proto files"
	@echo "make clean  - remove bin/"

build:
	$(GO) build -o $(BIN)/ ./cmd/...
	$(GO) build -o $(BIN)/plugins/ ./plugins/...

test:
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(GOFLAGS_TEST) ./...

test-short:
	$(GO) test -count=1 -short ./...

# Benchmarks, not timed tests: see scripts/bench/doc.go.
bench:
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x -timeout $(BENCH_TIMEOUT) ./scripts/bench/

# The binary's name carries its version, so that changing the pin installs the new one.
$(TOOLS)/golangci-lint-$(GOLANGCI_LINT_VERSION):
	GOBIN=$(TOOLS) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(TOOLS)/golangci-lint $@

PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
PROTOS := pkg/ipc/ctlpb/ctl.proto pkg/ipc/kidpb/kid.proto pkg/sdk/internal/handlerpb/handler.proto

$(TOOLS)/protoc-gen-go:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(TOOLS)/protoc-gen-go-grpc:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

# Regenerate the committed gRPC code (needs protoc: apt-get install protobuf-compiler).
proto: $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc
	PATH=$(TOOLS):$$PATH protoc --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative $(PROTOS)

tools: $(TOOLS)/golangci-lint-$(GOLANGCI_LINT_VERSION)

lint: $(TOOLS)/golangci-lint-$(GOLANGCI_LINT_VERSION)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(TOOLS)/golangci-lint-$(GOLANGCI_LINT_VERSION) run ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

demo: build
	bash scripts/demo.sh

clean:
	rm -rf $(BIN)

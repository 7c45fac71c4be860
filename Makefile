# Snakepit for Go. `make run` starts one agent with embedded NATS and the bundled
# example pool; `make test` runs every Go and Python test.

GO       ?= go
PYTHON   ?= python3
BIN      := bin
GOFLAGS  ?=
TEST_TIMEOUT ?= 30m

export TESTCONTAINERS_RYUK_DISABLED ?= true

.PHONY: all build run test test-go test-python lint proto deps clean bench

all: build

## deps: make sure the interpreter the workers need is present (Debian packages).
deps:
	@command -v $(PYTHON) >/dev/null 2>&1 || { \
		echo "installing python3 from Debian packages"; \
		apt-get update -qq && apt-get install -y -qq python3; }
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 9), sys.version' \
		|| { echo "python3 3.9 or newer is required"; exit 1; }

## build: bin/pool-agent and bin/snakectl.
build:
	$(GO) build $(GOFLAGS) -o $(BIN)/ ./cmd/pool-agent ./cmd/snakectl

## run: one agent, embedded NATS on 127.0.0.1:4222, the default pool.
run: deps build
	$(BIN)/pool-agent $(ARGS)

## test: every test, Go (with the race detector) and Python.
test: deps build test-python test-go

test-go:
	$(GO) test $(GOFLAGS) -race -count=1 -timeout $(TEST_TIMEOUT) ./...

test-python:
	cd python && $(PYTHON) -m unittest discover -s tests

## lint: gofmt and go vet.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
		if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## proto: regenerate schemas/*.pb.go (protoc from Debian, protoc-gen-go from the Go proxy).
proto:
	@command -v protoc >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq protobuf-compiler; }
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	cd schemas && PATH="$$($(GO) env GOPATH)/bin:$$PATH" protoc --go_out=. --go_opt=paths=source_relative snakepit.proto

clean:
	rm -rf $(BIN)

## bench: speed and cost against the floor in one run; writes bench/latest.json and
## bench/latest.svg and prints the table. Not part of make test. BENCH_ARGS passes
## flags (bin/snakebench -h).
bench: deps build
	$(GO) build $(GOFLAGS) -o $(BIN)/ ./bench/cmd/snakebench
	$(BIN)/snakebench -agent $(BIN)/pool-agent -python $(PYTHON) -out bench $(BENCH_ARGS)

.PHONY: bench-peers
## bench-peers: the same no-op call on Celery (2 prefork workers) over Redis on
## 127.0.0.1, side by side with bench/latest.json. Installs Debian's redis-server
## and python3-celery. Not part of make test.
bench-peers:
	bench/peers/peers.sh

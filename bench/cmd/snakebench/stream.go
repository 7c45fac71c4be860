package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/snakepit-go/snakepit/dispatch"
	"github.com/snakepit-go/snakepit/schemas"
)

// streamResult is the product's streaming figure, or why there is none.
type streamResult struct {
	Measured  bool    `json:"measured"`
	Why       string  `json:"why,omitempty"`
	Chunks    int     `json:"chunks"`
	PerSecond float64 `json:"chunks_per_s"`
	MBPerS    float64 `json:"mb_per_s"`
	// AdapterMsPerChunk is what the showcase's stream_bytes spends making one
	// chunk (random bytes and the running digest), timed in a bare interpreter.
	AdapterMsPerChunk float64 `json:"adapter_ms_per_chunk,omitempty"`
}

// measureStream streams n chunks of size bytes from the showcase's stream_blob
// (one prebuilt block, no work per chunk in the adapter, as the floor has none)
// through the Go client. An agent without streaming is reported, not failed.
func measureStream(ctx context.Context, c *dispatch.Client, pool string,
	n, size int) streamResult {
	chunks, bytes := 0, 0
	count := func(ch *dispatch.Chunk) error {
		if ch.Raw && len(ch.Data) == size {
			chunks++
			bytes += len(ch.Data)
		}
		return nil
	}
	args := map[string]int{"count": n, "size": size}
	began := time.Now()
	err := c.ExecuteStream(ctx, pool, "stream_blob", args, count,
		dispatch.WithTimeout(time.Minute), dispatch.WithWindow(streamWindow))
	elapsed := time.Since(began).Seconds()
	var e *dispatch.Error
	switch {
	case errors.As(err, &e) && e.Reason == schemas.ReasonPoolNotFound:
		return streamResult{Why: "not yet implemented: " + e.Message}
	case err != nil:
		return streamResult{Why: fmt.Sprintf("stream stream_blob failed: %v", err)}
	case chunks != n:
		return streamResult{Why: fmt.Sprintf("stream stream_blob: %d of %d chunks", chunks, n)}
	}
	return streamResult{
		Measured: true, Chunks: chunks,
		PerSecond: *num(float64(chunks) / elapsed), MBPerS: *num(float64(bytes) / 1e6 / elapsed),
	}
}

// chunkMakingCode does what stream_bytes does per chunk, without the runtime:
// the best of 5 rounds of n chunks, since a busy machine only adds time.
const chunkMakingCode = `import hashlib, os, sys, time
size, n = int(sys.argv[1]), int(sys.argv[2])
digest = hashlib.sha256()
best = None
for _ in range(5):
    began = time.perf_counter()
    for _ in range(n):
        digest.update(os.urandom(size))
    spent = (time.perf_counter() - began) / n
    best = spent if best is None else min(best, spent)
print(best * 1000)
`

// timeChunkMaking returns the milliseconds the showcase spends making one chunk
// of size bytes, so the stream's ratio can be read for what is the adapter's.
func timeChunkMaking(ctx context.Context, python string, size int) (float64, error) {
	out, err := exec.CommandContext(ctx, python, "-c", chunkMakingCode,
		strconv.Itoa(size), "16").Output()
	if err != nil {
		return 0, fmt.Errorf("time chunk making in %s: %w", python, err)
	}
	ms, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		return 0, fmt.Errorf("time chunk making: %q: %w", out, err)
	}
	return ms, nil
}

// sessionBucket is the KV bucket of session leases (DESIGN.md section 3).
const sessionBucket = "snakepit-sessions"

// leaseRecords counts the messages in the lease bucket's stream, asked of the
// JetStream API: 0 when the agent keeps no session leases (yet).
func leaseRecords(nc *nats.Conn) uint64 {
	m, err := nc.Request("$JS.API.STREAM.INFO.KV_"+sessionBucket, nil, 2*time.Second)
	if err != nil {
		return 0
	}
	var info struct {
		Error *struct {
			Code int `json:"code"`
		} `json:"error"`
		State struct {
			Messages uint64 `json:"messages"`
		} `json:"state"`
	}
	if json.Unmarshal(m.Data, &info) != nil || info.Error != nil {
		return 0
	}
	return info.State.Messages
}

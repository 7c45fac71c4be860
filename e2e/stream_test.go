package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/snakepit-go/snakepit/dispatch"
)

func TestStreamBatchInference(t *testing.T) {
	f := startFleet(t)
	var got []map[string]any
	err := f.client.ExecuteStream(t.Context(), "default", "batch_inference",
		map[string]any{"items": []int{1, 2, 3}}, func(c *dispatch.Chunk) error {
			var v map[string]any
			if err := c.Decode(&v); err != nil {
				return err
			}
			got = append(got, v)
			return nil
		})
	if err != nil {
		t.Fatalf("ExecuteStream(batch_inference) error = %v", err)
	}
	if len(got) != 3 || got[2]["item"].(interface{ String() string }).String() != "3" {
		t.Fatalf("chunks = %v, want 3 with item 1, 2, 3", got)
	}
}

// A slow reader that speaks the wire protocol by hand gets every chunk in order,
// and the agent never has more than the window in flight toward it.
func TestStreamSlowReaderLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("25 s of slow reading")
	}
	f := startFleet(t)
	const n, window = 5000, 32
	items := make([]int, n)
	for i := range items {
		items[i] = i
	}
	body, _ := json.Marshal(map[string]any{"items": items})
	inbox := f.nc.NewInbox()
	sub, err := f.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	req := nats.NewMsg("snakepit.default.stream.batch_inference")
	req.Reply = inbox
	req.Header.Set(dispatch.HeaderWindow, strconv.Itoa(window))
	req.Data = body
	if err := f.nc.PublishMsg(req); err != nil {
		t.Fatal(err)
	}

	var seq, maxPending int
	var memMax uint64
	for {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("after chunk %d: %v", seq, err)
		}
		if m.Header.Get(dispatch.HeaderStream) == dispatch.StreamEnd {
			break
		}
		if e := m.Header.Get(dispatch.HeaderError); e != "" {
			t.Fatalf("error reply after chunk %d: %s", seq, m.Data)
		}
		got, _ := strconv.Atoi(m.Header.Get(dispatch.HeaderSeq))
		if got != seq+1 {
			t.Fatalf("chunk %d after %d: a gap", got, seq)
		}
		seq = got
		pending, _, _ := sub.Pending()
		maxPending = max(maxPending, pending)
		if seq%500 == 0 {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			memMax = max(memMax, ms.HeapInuse)
		}
		time.Sleep(5 * time.Millisecond) // the slow reader under test
		if err := f.nc.Publish(m.Header.Get(dispatch.HeaderAck), []byte(strconv.Itoa(seq))); err != nil {
			t.Fatal(err)
		}
	}
	if seq != n {
		t.Fatalf("stream ended after %d chunks, want %d", seq, n)
	}
	if maxPending > window {
		t.Fatalf("reader saw %d chunks waiting, want at most the window %d", maxPending, window)
	}
	t.Logf("%d chunks, at most %d waiting, heap in use at most %d MiB", seq, maxPending, memMax>>20)
}

func TestStreamBytesDigest(t *testing.T) {
	f := startFleet(t)
	h := sha256.New()
	var total int
	var final map[string]any
	err := f.client.ExecuteStream(t.Context(), "default", "stream_bytes",
		map[string]int{"count": 256, "size": 256 << 10}, func(c *dispatch.Chunk) error {
			if c.Raw {
				h.Write(c.Data)
				total += len(c.Data)
				return nil
			}
			return c.Decode(&final)
		})
	if err != nil {
		t.Fatalf("ExecuteStream(stream_bytes) error = %v", err)
	}
	if total != 64<<20 || final["sha256"] != hex.EncodeToString(h.Sum(nil)) {
		t.Fatalf("got %d bytes, digest %v; want 64 MiB with sha256 %x", total, final, h.Sum(nil))
	}
}

// A chunk past the server's max payload (1 MiB) is split and reassembled.
func TestStreamChunkLargerThanMaxPayload(t *testing.T) {
	f := startFleet(t)
	var sizes []int
	var final map[string]any
	h := sha256.New()
	err := f.client.ExecuteStream(t.Context(), "default", "stream_bytes",
		map[string]int{"count": 2, "size": 3 << 20}, func(c *dispatch.Chunk) error {
			if c.Raw {
				sizes = append(sizes, len(c.Data))
				h.Write(c.Data)
				return nil
			}
			return c.Decode(&final)
		})
	if err != nil {
		t.Fatalf("ExecuteStream error = %v", err)
	}
	if len(sizes) != 2 || sizes[0] != 3<<20 || final["sha256"] != hex.EncodeToString(h.Sum(nil)) {
		t.Fatalf("chunks %v, final %v; want two whole 3 MiB chunks and a matching digest", sizes, final)
	}
}

func TestStreamCancelRunsFinallyAndFreesWorker(t *testing.T) {
	finallyLog := filepath.Join(t.TempDir(), "finally.log")
	p := testPool("default", 1)
	p.AdapterEnv = map[string]string{"SNAKEPIT_SHOWCASE_FINALLY_LOG": finallyLog}
	f := startFleet(t, p)

	var seen int
	err := f.client.ExecuteStream(t.Context(), "default", "infinite_stream", nil,
		func(c *dispatch.Chunk) error {
			seen++
			if seen == 10 {
				return dispatch.ErrHalt
			}
			return nil
		})
	if err != nil || seen != 10 {
		t.Fatalf("ExecuteStream = %v after %d chunks, want nil after 10", err, seen)
	}
	timeout := dispatch.WithTimeout(time.Second)
	began := time.Now()
	if _, err := f.client.Execute(t.Context(), "default", "ping", nil, timeout); err != nil {
		t.Fatalf("ping after cancel: %v", err)
	}
	t.Logf("ping answered %v after the cancel", time.Since(began))
	eventually(t, 2*time.Second, "generator finally ran", func() bool {
		b, _ := os.ReadFile(finallyLog)
		return strings.Contains(string(b), "closed")
	})
}

func TestStreamErrorAfterChunks(t *testing.T) {
	f := startFleet(t)
	var seen int
	err := f.client.ExecuteStream(t.Context(), "default", "fail_after", map[string]int{"n": 3},
		func(*dispatch.Chunk) error { seen++; return nil })
	var e *dispatch.Error
	if !errors.As(err, &e) || e.Details["type"] != "ValueError" || seen != 3 {
		t.Fatalf("ExecuteStream(fail_after) = %v after %d chunks, want ValueError after 3", err, seen)
	}
}

func TestStreamCallbackErrorIsReturned(t *testing.T) {
	f := startFleet(t, testPool("default", 1))
	boom := errors.New("callback failed")
	err := f.client.ExecuteStream(t.Context(), "default", "infinite_stream", nil,
		func(*dispatch.Chunk) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("ExecuteStream error = %v, want the callback's", err)
	}
	timeout := dispatch.WithTimeout(2 * time.Second)
	if _, err := f.client.Execute(t.Context(), "default", "ping", nil, timeout); err != nil {
		t.Fatalf("ping after callback error: %v", err)
	}
}

func TestStreamUnknownPool(t *testing.T) {
	f := startFleet(t)
	err := f.client.ExecuteStream(t.Context(), "nope", "batch_inference", nil,
		func(*dispatch.Chunk) error { return nil })
	if !errors.Is(err, &dispatch.Error{Reason: "pool_not_found"}) {
		t.Fatalf("ExecuteStream(nope) error = %v, want pool_not_found", err)
	}
}

// A generator slower than the reader's idle timeout is kept alive by
// keepalives; the same stream without them is taken as dead.
func TestStreamKeepalive(t *testing.T) {
	f := startFleet(t, testPool("default", 1))
	args := map[string]int{"sections": 2, "delay_ms": 900}
	var got int
	err := f.client.ExecuteStream(t.Context(), "default", "generate_report", args,
		func(*dispatch.Chunk) error { got++; return nil }, dispatch.WithIdleTimeout(400*time.Millisecond))
	if err != nil || got != 2 {
		t.Fatalf("slow stream with keepalives = %v after %d chunks, want nil after 2", err, got)
	}

	// A raw reader that asks for no keepalives and waits 400 ms for each message.
	inbox := f.nc.NewInbox()
	sub, _ := f.nc.SubscribeSync(inbox)
	defer sub.Unsubscribe()
	req := nats.NewMsg("snakepit.default.stream.generate_report")
	req.Reply = inbox
	req.Data, _ = json.Marshal(args)
	if err := f.nc.PublishMsg(req); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(5 * time.Second); err != nil || m.Header.Get(dispatch.HeaderSeq) != "1" {
		t.Fatalf("first chunk: %v", err)
	}
	if m, err := sub.NextMsg(400 * time.Millisecond); !errors.Is(err, nats.ErrTimeout) {
		t.Fatalf("without keepalives the reader heard %v (%v) within 400ms, want silence", m, err)
	}
}

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/snakepit-go/snakepit/dispatch"
	"github.com/snakepit-go/snakepit/schemas"
)

func TestExecute(t *testing.T) {
	f := startFleet(t)
	ctx := t.Context()

	t.Run("ping", func(t *testing.T) {
		v, err := f.client.Execute(ctx, "default", "ping", map[string]any{"message": "hi"})
		if err != nil {
			t.Fatalf("Execute(ping) error = %v", err)
		}
		m := v.(map[string]any)
		if m["message"] != "hi" || m["worker_id"] == "" {
			t.Fatalf("Execute(ping) = %v, want message hi and a worker id", m)
		}
	})

	t.Run("echo keeps values exact", func(t *testing.T) {
		in := `{"n": 9007199254740993, "s": "h\u00e9llo \u2713", "f": 0.1, "z": null, ` +
			`"big": 123456789012345678901234567890}`
		r, err := f.client.Call(ctx, "default", "echo", json.RawMessage(in))
		if err != nil {
			t.Fatalf("Call(echo) error = %v", err)
		}
		if !sameJSON(t, r.Data, []byte(in)) {
			t.Fatalf("Call(echo) = %s, want %s", r.Data, in)
		}
		if r.Worker == "" || r.RequestID == "" {
			t.Fatalf("Call(echo) reply headers: worker %q request id %q, want both", r.Worker, r.RequestID)
		}
	})

	t.Run("raw bytes", func(t *testing.T) {
		in := []byte{0, 1, 2, 0xff, 0xfe, 'x'}
		v, err := f.client.Execute(ctx, "default", "echo", in)
		if err != nil {
			t.Fatalf("Execute(echo, bytes) error = %v", err)
		}
		if b, ok := v.([]byte); !ok || !bytes.Equal(b, in) {
			t.Fatalf("Execute(echo, bytes) = %#v, want %v", v, in)
		}
	})

	t.Run("request id echoed", func(t *testing.T) {
		r, err := f.client.Call(ctx, "default", "ping", nil, dispatch.WithRequestID("req-77"))
		if err != nil || r.RequestID != "req-77" {
			t.Fatalf("Call(ping, req-77) = %v, %v; want request id req-77", r, err)
		}
	})
}

func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	for _, p := range []struct {
		data []byte
		v    *any
	}{{a, &va}, {b, &vb}} {
		d := json.NewDecoder(bytes.NewReader(p.data))
		d.UseNumber()
		if err := d.Decode(p.v); err != nil {
			t.Fatalf("decode %s: %v", p.data, err)
		}
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return bytes.Equal(ja, jb)
}

func TestErrors(t *testing.T) {
	f := startFleet(t)
	cases := []struct {
		name     string
		command  string
		body     string
		category string
		reason   string
		contains string
	}{
		{"python exception", "fail", `{"message":"boom"}`, "worker", "python_exception", "boom"},
		{"unknown command", "no_such_command", `{}`, "validation", "unknown_command", "no_such_command"},
		{"bad json", "echo", `{"a":`, "validation", "bad_arguments", "JSON object"},
		{"not an object", "echo", `[1,2]`, "validation", "bad_arguments", "JSON object"},
		{"bad arguments", "ping", `{"nope":1}`, "validation", "bad_arguments", "nope"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.client.Call(t.Context(), "default", tc.command, json.RawMessage(tc.body))
			var e *dispatch.Error
			if !errors.As(err, &e) {
				t.Fatalf("Call(%s, %s) error = %v, want *dispatch.Error", tc.command, tc.body, err)
			}
			if e.Category != tc.category || e.Reason != tc.reason ||
				!bytes.Contains([]byte(e.Message), []byte(tc.contains)) {
				t.Fatalf("Call(%s) = %+v, want %s/%s mentioning %q",
					tc.command, e, tc.category, tc.reason, tc.contains)
			}
		})
	}

	t.Run("exception details", func(t *testing.T) {
		_, err := f.client.Call(t.Context(), "default", "fail", map[string]string{"message": "boom"})
		var e *dispatch.Error
		if !errors.As(err, &e) || e.Details["type"] != "ValueError" {
			t.Fatalf("Call(fail) = %v, want details.type ValueError", err)
		}
		tb, _ := e.Details["traceback"].(string)
		if !bytes.Contains([]byte(tb), []byte("ValueError: boom")) {
			t.Fatalf("Call(fail) traceback = %q, want it to end in ValueError: boom", tb)
		}
	})

	t.Run("wire headers of an error", func(t *testing.T) {
		m, err := f.nc.Request("snakepit.default.exec.fail", []byte(`{"message":"boom"}`), 10*time.Second)
		if err != nil {
			t.Fatalf("nats request: %v", err)
		}
		want := map[string]string{
			"Snakepit-Error": "worker", "Nats-Service-Error": "boom", "Nats-Service-Error-Code": "500",
		}
		for k, v := range want {
			if got := m.Header.Get(k); got != v {
				t.Errorf("header %s = %q, want %q", k, got, v)
			}
		}
		if m.Header.Get("Snakepit-Request-Id") == "" || m.Header.Get("Snakepit-Worker") == "" {
			t.Errorf("error reply lacks Snakepit-Request-Id or Snakepit-Worker: %v", m.Header)
		}
	})

	t.Run("unknown pool", func(t *testing.T) {
		_, err := f.client.Call(t.Context(), "no-such-pool", "ping", nil)
		if !errors.Is(err, &dispatch.Error{Category: "pool", Reason: "pool_not_found"}) {
			t.Fatalf("Call(no-such-pool) error = %v, want pool/pool_not_found", err)
		}
	})

	t.Run("still serving", func(t *testing.T) {
		if _, err := f.client.Execute(t.Context(), "default", "ping", nil); err != nil {
			t.Fatalf("ping after errors: %v", err)
		}
	})
}

func TestStatsCountRequestsAndErrors(t *testing.T) {
	f := startFleet(t)
	ctx := t.Context()
	for i := 0; i < 10; i++ {
		if _, err := f.client.Execute(ctx, "default", "ping", nil); err != nil {
			t.Fatalf("ping %d: %v", i, err)
		}
	}
	if _, err := f.client.Execute(ctx, "default", "fail", nil); err == nil {
		t.Fatal("fail succeeded")
	}
	reports, err := f.client.Reports(ctx, false)
	if err != nil || len(reports) != 1 || len(reports[0].Pools) != 1 {
		t.Fatalf("Reports() = %v, %v; want one agent with one pool", reports, err)
	}
	st := reports[0].Pools[0]
	if st.Requests != 11 || st.Errors != 1 || st.Workers != 2 || st.Available != 2 || st.Busy != 0 {
		t.Fatalf("stats = %+v, want 11 requests, 1 error, 2 workers all available", st)
	}
}

func TestCrashedWorkerIsReplaced(t *testing.T) {
	f := startFleet(t, testPool("default", 1))
	ctx := t.Context()
	before := workerPID(t, f)

	_, err := f.client.Execute(ctx, "default", "crash", map[string]int{"exit_code": 7})
	var e *dispatch.Error
	if !errors.As(err, &e) || e.Reason != schemas.ReasonWorkerCrashed {
		t.Fatalf("Execute(crash) error = %v, want worker/worker_crashed", err)
	}
	if code, _ := e.Details["exit_code"].(float64); code != 7 {
		t.Fatalf("Execute(crash) details = %v, want exit_code 7", e.Details)
	}
	// The replacement serves the next request, waiting in the queue if needed.
	v, err := f.client.Execute(ctx, "default", "ping", nil)
	if err != nil {
		t.Fatalf("ping after crash: %v", err)
	}
	after := v.(map[string]any)["pid"].(json.Number).String()
	if after == before {
		t.Fatalf("pid after crash = %s, want a new process", after)
	}
}

func workerPID(t *testing.T, f *fleet) string {
	t.Helper()
	v, err := f.client.Execute(t.Context(), "default", "ping", nil)
	if err != nil {
		t.Fatalf("ping: %v", err)
	}
	return v.(map[string]any)["pid"].(json.Number).String()
}

func TestQueueBounds(t *testing.T) {
	p := testPool("default", 1)
	p.MaxQueueSize = 1
	p.QueueTimeout = 300 * time.Millisecond
	f := startFleet(t, p)
	ctx := t.Context()

	// One request holds the only worker.
	busy := make(chan error, 1)
	go func() {
		_, err := f.client.Execute(ctx, "default", "long_running_task",
			map[string]float64{"seconds": 1.5})
		busy <- err
	}()
	eventually(t, 5*time.Second, "worker busy", func() bool {
		return f.host.Agent().Pools()[0].Stats().Busy == 1
	})

	// The next waits in the queue; while it waits, one more is refused at once.
	var wg sync.WaitGroup
	var queuedErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, queuedErr = f.client.Execute(ctx, "default", "ping", nil)
	}()
	eventually(t, 5*time.Second, "request queued", func() bool {
		return f.host.Agent().Pools()[0].Stats().Queued == 1
	})
	began := time.Now()
	_, err := f.client.Execute(ctx, "default", "ping", nil)
	if !errors.Is(err, &dispatch.Error{Category: "pool", Reason: "pool_saturated"}) {
		t.Fatalf("third request error = %v, want pool/pool_saturated", err)
	}
	if d := time.Since(began); d > 250*time.Millisecond {
		t.Errorf("pool_saturated took %v, want an answer at once", d)
	}
	wg.Wait()
	if !errors.Is(queuedErr, &dispatch.Error{Category: "timeout", Reason: "queue_timeout"}) {
		t.Fatalf("queued request error = %v, want timeout/queue_timeout", queuedErr)
	}
	if err := <-busy; err != nil {
		t.Fatalf("long_running_task: %v", err)
	}
	st := f.host.Agent().Pools()[0].Stats()
	if st.QueueTimeouts != 1 || st.PoolSaturated != 1 || st.Errors != 2 {
		t.Fatalf("stats = %+v, want 1 queue timeout, 1 saturated, 2 errors", st)
	}
}

func TestExpiredDeadlineIsNeverStarted(t *testing.T) {
	f := startFleet(t, testPool("default", 1))
	ctx := t.Context()
	busy := make(chan error, 1)
	go func() {
		_, err := f.client.Execute(ctx, "default", "long_running_task", map[string]float64{"seconds": 1})
		busy <- err
	}()
	eventually(t, 5*time.Second, "worker busy", func() bool {
		return f.host.Agent().Pools()[0].Stats().Busy == 1
	})

	// A caller that gives the agent 200 ms waits behind the busy worker; its
	// request must be dropped, not run after its caller left.
	msg := nats.NewMsg("snakepit.default.exec.crash")
	msg.Header.Set(dispatch.HeaderTimeout, "200")
	msg.Data = []byte(`{}`)
	reply, err := f.nc.RequestMsg(msg, 5*time.Second)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if got := reply.Header.Get(dispatch.HeaderError); got != "timeout" {
		t.Fatalf("reply error category = %q (%s), want timeout", got, reply.Data)
	}
	if err := <-busy; err != nil {
		t.Fatalf("long_running_task: %v", err)
	}
	// Had the crash run, the worker would have been replaced.
	if st := f.host.Agent().Pools()[0].Stats(); st.Restarts != 0 {
		t.Fatalf("restarts = %d, want 0: the expired request ran", st.Restarts)
	}
}

func TestInvalidHeaders(t *testing.T) {
	f := startFleet(t)
	cases := []struct{ name, header, value string }{
		{"timeout not a number", dispatch.HeaderTimeout, "soon"},
		{"session too long", dispatch.HeaderSession, string(bytes.Repeat([]byte("x"), 257))},
		{"session not utf-8", dispatch.HeaderSession, "\xff\xfe"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg := nats.NewMsg("snakepit.default.exec.ping")
			msg.Header.Set(tc.header, tc.value)
			reply, err := f.nc.RequestMsgWithContext(ctxTimeout(t, 5*time.Second), msg)
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			if got := reply.Header.Get(dispatch.HeaderError); got != "validation" {
				t.Fatalf("%s: error category = %q (%s), want validation", tc.name, got, reply.Data)
			}
		})
	}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestKilledWorkerGetsNewPID(t *testing.T) {
	f := startFleet(t, testPool("default", 1))
	pool := f.host.Agent().Pools()[0]
	old := pool.Workers()[0]
	if err := syscall.Kill(int(old.Pid), syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", old.Pid, err)
	}
	// A request racing the kill itself may be lost with the process; the ones
	// after the agent has seen the exit must all succeed.
	eventually(t, 5*time.Second, "exit noticed", func() bool {
		return pool.Workers()[0].Incarnation > old.Incarnation
	})
	for i := 0; i < 5; i++ {
		if _, err := f.client.Execute(t.Context(), "default", "ping", nil); err != nil {
			t.Fatalf("ping %d after kill -9: %v", i, err)
		}
	}
	now := pool.Workers()[0]
	if now.Id != old.Id || now.Pid == old.Pid || now.Incarnation != old.Incarnation+1 {
		t.Fatalf("worker after kill -9 = %v, want %s with a new pid and incarnation %d",
			now, old.Id, old.Incarnation+1)
	}
	if st := pool.Stats(); st.Restarts != 1 {
		t.Fatalf("restarts = %d, want 1", st.Restarts)
	}
}

package snakepit

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/snakepit-go/snakepit/dispatch"
	"github.com/snakepit-go/snakepit/schemas"
)

func TestExecute(t *testing.T) {
	rt := newRuntime(t, testOptions(t, testConfig(2)))
	ctx := t.Context()
	cases := []struct {
		name    string
		call    func() (any, error)
		want    map[string]any
		wantErr *Error
	}{
		{"ping", func() (any, error) {
			return rt.Execute(ctx, "ping", map[string]any{"message": "hi"})
		}, map[string]any{"message": "hi"}, nil},
		{"named pool", func() (any, error) {
			return rt.Execute(ctx, "ping", nil, WithPool("default"), WithTimeout(5*time.Second))
		}, map[string]any{"message": "pong"}, nil},
		{"session", func() (any, error) {
			return rt.ExecuteInSession(ctx, "user-42", "initialize", map[string]any{"config": 1})
		}, map[string]any{"session_id": "user-42"}, nil},
		{"python exception", func() (any, error) {
			return rt.Execute(ctx, "fail", map[string]any{"message": "boom"})
		}, nil, &Error{Category: CategoryWorker, Reason: schemas.ReasonPythonException}},
		{"unknown command", func() (any, error) {
			return rt.Execute(ctx, "no_such_command", nil)
		}, nil, &Error{Category: CategoryValidation, Reason: schemas.ReasonUnknownCommand}},
		{"unknown pool", func() (any, error) {
			return rt.Execute(ctx, "ping", nil, WithPool("nope"))
		}, nil, &Error{Category: CategoryPool, Reason: ReasonPoolNotFound}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := tc.call()
			if tc.wantErr != nil {
				var e *Error
				if !errors.As(err, &e) || !errors.Is(err, tc.wantErr) {
					t.Fatalf("error = %v, want %s/%s", err, tc.wantErr.Category, tc.wantErr.Reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("error = %v", err)
			}
			m, _ := v.(map[string]any)
			for k, want := range tc.want {
				if m[k] != want {
					t.Fatalf("result = %v, want %s = %v", v, k, want)
				}
			}
		})
	}
}

// TestErrorIsOneType: an error from dispatch matches *snakepit.Error.
func TestErrorIsOneType(t *testing.T) {
	var err error = &dispatch.Error{Category: CategoryPool, Reason: ReasonPoolNotFound}
	var e *Error
	if !errors.As(err, &e) || e.Reason != ReasonPoolNotFound {
		t.Fatalf("errors.As(dispatch.Error, *snakepit.Error) = false, want true")
	}
}

func TestStatsAndWorkersThreeForms(t *testing.T) {
	local := startStd(t, testOptions(t, testConfig(1, "default", "hpc")))
	ctx := t.Context()
	for range 3 {
		if _, err := Execute(ctx, "ping", nil); err != nil {
			t.Fatalf("Execute(ping) error = %v", err)
		}
	}
	remote := newRuntime(t, Options{NATSURL: local.URL(), Log: testLogger(t)})
	runtimes := []struct {
		name string
		rt   *Runtime
	}{{"embedded", local}, {"remote", remote}}
	for _, r := range runtimes {
		t.Run(r.name, func(t *testing.T) { checkStatsForms(t, r.rt) })
	}
	t.Run("package level", func(t *testing.T) {
		s, err := GetStats(ctx)
		if err != nil || s.Workers != 2 || s.Requests != 3 {
			t.Fatalf("GetStats() = %+v, %v; want 2 workers, 3 requests", s, err)
		}
		ids, err := ListPoolWorkers(ctx, "hpc")
		if err != nil || len(ids) != 1 || !strings.HasPrefix(ids[0], "hpc-1@") {
			t.Fatalf("ListPoolWorkers(hpc) = %v, %v; want one hpc worker", ids, err)
		}
		if _, err := GetPoolStats(ctx, "nope"); !errors.Is(err, &Error{Reason: ReasonPoolNotFound}) {
			t.Fatalf("GetPoolStats(nope) error = %v, want pool_not_found", err)
		}
	})
}

func checkStatsForms(t *testing.T, rt *Runtime) {
	ctx := t.Context()
	all, err := rt.GetStats(ctx)
	if err != nil || all.Workers != 2 || all.Requests != 3 || all.Available+all.Busy != 2 {
		t.Fatalf("GetStats() = %+v, %v; want 2 workers up and 3 requests", all, err)
	}
	def, err := rt.GetPoolStats(ctx, "default")
	if err != nil || def.Workers != 1 || def.Requests != 3 {
		t.Fatalf("GetPoolStats(default) = %+v, %v; want 1 worker and 3 requests", def, err)
	}
	ids, err := rt.ListWorkers(ctx)
	if err != nil || len(ids) != 2 {
		t.Fatalf("ListWorkers() = %v, %v; want 2 ids", ids, err)
	}
	ids, err = rt.ListPoolWorkers(ctx, "default")
	if err != nil || len(ids) != 1 || !strings.HasPrefix(ids[0], "default-1@") {
		t.Fatalf("ListPoolWorkers(default) = %v, %v; want [default-1@...]", ids, err)
	}
	notFound := &Error{Category: CategoryPool, Reason: ReasonPoolNotFound}
	if _, err := rt.GetPoolStats(ctx, "nope"); !errors.Is(err, notFound) {
		t.Fatalf("GetPoolStats(nope) error = %v, want pool/pool_not_found", err)
	}
	if _, err := rt.ListPoolWorkers(ctx, "nope"); !errors.Is(err, notFound) {
		t.Fatalf("ListPoolWorkers(nope) error = %v, want pool/pool_not_found", err)
	}
}

func TestAwaitReady(t *testing.T) {
	rt := newRuntime(t, testOptions(t, testConfig(2)))
	if err := rt.AwaitReady(t.Context(), 5*time.Second); err != nil {
		t.Fatalf("AwaitReady() on a started runtime = %v, want nil", err)
	}

	// An agent that serves no pool: nobody answers a remote fleet query.
	cfg := testConfig(1)
	cfg.PoolingEnabled = false
	idle := newRuntime(t, testOptions(t, cfg))
	err := idle.AwaitReady(t.Context(), time.Second)
	if !errors.Is(err, &Error{Category: CategoryPool, Reason: ReasonPoolNotFound}) {
		t.Fatalf("AwaitReady() with pooling disabled = %v, want pool/pool_not_found", err)
	}
	if s, err := idle.GetStats(t.Context()); err != nil || s != (Stats{}) {
		t.Fatalf("GetStats() with pooling disabled = %+v, %v; want no pool", s, err)
	}
	remote := newRuntime(t, Options{NATSURL: idle.URL(), Log: testLogger(t)})
	began := time.Now()
	err = remote.AwaitReady(t.Context(), 300*time.Millisecond)
	var e *Error
	if !errors.As(err, &e) || e.Category != CategoryTimeout ||
		e.Reason != ReasonPoolInitializationTimeout {
		t.Fatalf("AwaitReady() on an empty fleet = %v, want timeout/pool_initialization_timeout", err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("AwaitReady(300ms) took %v", took)
	}
}

func TestNotStarted(t *testing.T) {
	stopStd(t)
	ctx := t.Context()
	calls := map[string]func() error{
		"Execute":     func() error { _, err := Execute(ctx, "ping", nil); return err },
		"GetStats":    func() error { _, err := GetStats(ctx); return err },
		"ListWorkers": func() error { _, err := ListWorkers(ctx); return err },
		"AwaitReady":  func() error { return AwaitReady(ctx, time.Millisecond) },
		"Stop":        func() error { return Stop(ctx) },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrNotStarted) {
			t.Errorf("%s() error = %v, want ErrNotStarted", name, err)
		}
	}
	if err := Cleanup(ctx); err != nil {
		t.Errorf("Cleanup() with no runtime = %v, want nil", err)
	}
}

func TestStartTwiceAndTempStateDir(t *testing.T) {
	stopStd(t)
	opts := testOptions(t, testConfig(1))
	opts.StateDir = ""
	rt := startStd(t, opts)
	if err := Start(t.Context(), opts); !errors.Is(err, ErrAlreadyStarted) {
		t.Fatalf("second Start() = %v, want ErrAlreadyStarted", err)
	}
	dir := rt.StateDir()
	if dir == "" || !rt.Embedded() {
		t.Fatalf("StateDir() = %q, Embedded() = %v; want a temporary dir", dir, rt.Embedded())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := Stop(ctx); err != nil {
		t.Fatalf("Stop() = %v", err)
	}
	assertNoProcesses(t, dir)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary state dir %s after Stop: %v, want removed", dir, err)
	}
	if _, err := rt.Execute(ctx, "ping", nil); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("Execute() after Stop = %v, want ErrNotStarted", err)
	}
}

func TestDefaultPool(t *testing.T) {
	cases := []struct {
		name  string
		pools []string
		want  string
	}{
		{"default pool configured", []string{"hpc", "default"}, "default"},
		{"first pool otherwise", []string{"hpc", "gpu"}, "hpc"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rt := &Runtime{cfg: testConfig(1, tc.pools...)}
			if got := rt.callOptions(nil).pool; got != tc.want {
				t.Fatalf("default pool of %v = %q, want %q", tc.pools, got, tc.want)
			}
			if got := rt.callOptions([]CallOption{WithPool("x")}).pool; got != "x" {
				t.Fatalf("WithPool(x) pool = %q, want x", got)
			}
		})
	}
}

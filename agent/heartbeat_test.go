package agent

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/snakepit-go/snakepit/config"
)

func testHeartbeat() config.Heartbeat {
	return config.Heartbeat{
		Enabled: true, PingInterval: 2 * time.Second, Timeout: 10 * time.Second,
		MaxMissed: 3, Dependent: true,
	}
}

func TestHeartbeatPolicy(t *testing.T) {
	cases := []struct {
		name   string
		cfg    func(*config.Heartbeat)
		answer func(seq uint64) bool // whether ping seq gets a PONG at once
		hungAt time.Duration         // 0: never within the run
	}{
		{"always answered", nil, func(uint64) bool { return true }, 0},
		{"missed in a row", nil, func(seq uint64) bool { return seq < 3 }, 10 * time.Second},
		{"timeout before misses",
			func(c *config.Heartbeat) { c.MaxMissed = 100; c.Timeout = 3 * time.Second },
			func(seq uint64) bool { return seq < 2 }, 5 * time.Second},
		{"late pongs count", nil, func(seq uint64) bool { return seq%3 == 0 }, 0},
		{"initial delay", func(c *config.Heartbeat) { c.InitialDelay = 5 * time.Second },
			func(uint64) bool { return false }, 11 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testHeartbeat()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			start := time.Unix(1000, 0)
			hb := newHeartbeat(cfg, start)
			var hungAt time.Duration
			for now := start; now.Before(start.Add(30 * time.Second)); now = hb.next() {
				act := hb.tick(now)
				if act.hung && hungAt == 0 {
					hungAt = now.Sub(start)
				}
				if act.ping != 0 && tc.answer(act.ping) {
					hb.pong()
				}
			}
			if hungAt != tc.hungAt {
				t.Fatalf("hung at %v, want %v", hungAt, tc.hungAt)
			}
		})
	}
}

// fakeWorker answers pings while answering is set.
type fakeWorker struct {
	mu        sync.Mutex
	answering bool
	pings     int
	pongCh    chan uint64
	exited    chan struct{}
}

func (f *fakeWorker) ping(seq uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pings++
	if f.answering {
		f.pongCh <- seq
	}
	return nil
}

func (f *fakeWorker) pongs() <-chan uint64  { return f.pongCh }
func (f *fakeWorker) done() <-chan struct{} { return f.exited }

func (f *fakeWorker) setAnswering(v bool) {
	f.mu.Lock()
	f.answering = v
	f.mu.Unlock()
}

// TestRunHeartbeatDetectsHang runs the heartbeat loop in a bubble: a worker
// that stops answering at t is reported hung no later than t + interval +
// timeout, and only once.
func TestRunHeartbeatDetectsHang(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testHeartbeat()
		cfg.MaxMissed = 100
		f := &fakeWorker{answering: true, pongCh: make(chan uint64, 1), exited: make(chan struct{})}
		var hung []time.Time
		var mu sync.Mutex
		go runHeartbeat(f, cfg, zerolog.Nop(), func(string) {
			mu.Lock()
			hung = append(hung, time.Now())
			mu.Unlock()
		})

		time.Sleep(7 * time.Second)
		stopped := time.Now()
		f.setAnswering(false)
		time.Sleep(30 * time.Second)
		close(f.exited)
		synctest.Wait()

		mu.Lock()
		defer mu.Unlock()
		if len(hung) != 1 {
			t.Fatalf("onHung called %d times, want once", len(hung))
		}
		if d := hung[0].Sub(stopped); d > cfg.PingInterval+cfg.Timeout {
			t.Fatalf("hang seen %v after it began, want at most %v", d, cfg.PingInterval+cfg.Timeout)
		}
	})
}

// TestRunHeartbeatLeavesAnsweringWorker: a worker that keeps answering, however
// long it runs, is never reported.
func TestRunHeartbeatLeavesAnsweringWorker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeWorker{answering: true, pongCh: make(chan uint64, 1), exited: make(chan struct{})}
		called := false
		go runHeartbeat(f, testHeartbeat(), zerolog.Nop(), func(string) { called = true })
		time.Sleep(10 * time.Minute)
		close(f.exited)
		synctest.Wait()
		if called || f.pings < 290 {
			t.Fatalf("after 10 minutes: onHung called %v, %d pings; want not called, about 300 pings",
				called, f.pings)
		}
	})
}

package agent

import (
	"testing"
	"time"
)

func TestRestartPolicy(t *testing.T) {
	noJitter := func() float64 { return 0.5 }
	cases := []struct {
		name   string
		exits  []time.Duration // uptime of each exit, all ready
		ready  bool
		delay  time.Duration
		reason string
		loop   bool
	}{
		{"first crash", []time.Duration{time.Second}, true, 100 * time.Millisecond, "crashed", false},
		{"doubles", []time.Duration{0, 0, 0}, true, 400 * time.Millisecond, "crashed", false},
		{"stable resets", []time.Duration{0, 0, 0, time.Minute}, true,
			100 * time.Millisecond, "crashed", false},
		{"start failures loop", []time.Duration{0, 0, 0, 0, 0}, false,
			1600 * time.Millisecond, "crash_loop", true},
		{"capped", make([]time.Duration, 12), true, 10 * time.Second, "crash_loop", true},
		{"start failed", []time.Duration{0}, false, 100 * time.Millisecond, "start_failed", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newRestartPolicy()
			p.jitter = noJitter
			var d restartDecision
			for _, up := range tc.exits {
				d = p.next(up, tc.ready)
			}
			if d.delay != tc.delay || d.reason != tc.reason || d.crashLoop != tc.loop {
				t.Fatalf("next() = %+v, want delay %v reason %s loop %v", d, tc.delay, tc.reason, tc.loop)
			}
		})
	}
}

func TestRestartJitterBounds(t *testing.T) {
	for _, j := range []float64{0, 0.999} {
		p := newRestartPolicy()
		p.jitter = func() float64 { return j }
		d := p.next(0, true).delay
		if d < 80*time.Millisecond || d > 120*time.Millisecond {
			t.Fatalf("next() with jitter %v = %v, want within 20%% of 100ms", j, d)
		}
	}
}

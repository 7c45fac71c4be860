package agent

import (
	"math/rand/v2"
	"time"
)

// restartPolicy decides how long to wait before restarting a worker that exited.
// It is pure: it keeps a count of consecutive failures and reads no clock of its
// own, so tests drive it without sleeping.
type restartPolicy struct {
	// base is the first delay; each consecutive failure doubles it up to max.
	base, max time.Duration
	// stableAfter is the uptime after which an exit no longer counts as a failure
	// in a row.
	stableAfter time.Duration
	// loopAfter consecutive failures make a crash loop.
	loopAfter int
	// jitter returns a number in [0, 1); delays vary by ±20% of themselves.
	jitter func() float64

	failures int
}

// restartDecision is what to do after an exit.
type restartDecision struct {
	delay     time.Duration
	reason    string
	crashLoop bool
}

func newRestartPolicy() *restartPolicy {
	return &restartPolicy{
		base: 100 * time.Millisecond, max: 10 * time.Second,
		stableAfter: 30 * time.Second, loopAfter: 5, jitter: rand.Float64,
	}
}

// next returns the decision for a worker that ran for uptime; ready tells whether
// it finished its handshake.
func (r *restartPolicy) next(uptime time.Duration, ready bool) restartDecision {
	if ready && uptime >= r.stableAfter {
		r.failures = 0
	}
	r.failures++
	d := r.base << min(r.failures-1, 16)
	if d > r.max || d <= 0 {
		d = r.max
	}
	d += time.Duration((r.jitter()*0.4 - 0.2) * float64(d))
	dec := restartDecision{delay: d, reason: "crashed"}
	if !ready {
		dec.reason = "start_failed"
	}
	if r.failures >= r.loopAfter {
		dec.crashLoop = true
		dec.reason = "crash_loop"
	}
	return dec
}

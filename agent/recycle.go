package agent

import (
	"time"

	"github.com/snakepit-go/snakepit/config"
)

// Reasons a worker is replaced while it is healthy.
const (
	recycleMaxRequests = "worker_max_requests"
	recycleTTL         = "worker_ttl"
	recycleCleanup     = "cleanup"
)

// recyclePolicy decides when a healthy worker is replaced. It is pure: it is
// given the worker's age and request counts and reads no clock.
//
// A worker reaches worker_max_requests once that many requests have started on
// it; from then on it takes no new one. Its replacement is started ahead, when
// no more than one round of requests (the worker's capacity) is left, so it has
// usually finished its handshake by the time the old worker runs dry.
type recyclePolicy struct {
	ttl         time.Duration // 0: never by age
	maxRequests int           // 0: never by count
}

func newRecyclePolicy(cfg config.Pool) recyclePolicy {
	return recyclePolicy{ttl: cfg.WorkerTTL, maxRequests: cfg.WorkerMaxRequests}
}

// exhausted reports whether a worker on which started requests began may take
// no new one.
func (r recyclePolicy) exhausted(started int) bool {
	return r.maxRequests > 0 && started >= r.maxRequests
}

// prepare reports whether the replacement of a worker that has begun started
// requests and runs up to capacity at once should be started now.
func (r recyclePolicy) prepare(started, capacity int) bool {
	return r.maxRequests > 0 && started+capacity >= r.maxRequests
}

// expiry is when a worker started at began reaches worker_ttl; zero for never.
func (r recyclePolicy) expiry(began time.Time) time.Time {
	if r.ttl <= 0 {
		return time.Time{}
	}
	return began.Add(r.ttl)
}

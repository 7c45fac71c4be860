package agent

import (
	"fmt"

	"github.com/snakepit-go/snakepit/config"
)

// A worker of the thread profile runs several requests at once in one Python
// process (the runtime's --threads N). The pool gives such a worker as many
// slots as config.Pool.Concurrency() and fills the first capacity of them, so
// the queue offers the worker that many requests at once; capacity_strategy
// decides the number at the handshake:
//
//	pool     the configuration alone: threads_per_worker (1 in the process
//	         profile), whatever the adapter says
//	profile  the worker's own word: the threads its HELLO reports, or 1 when its
//	         adapter is not declared thread safe
//	hybrid   the smaller of the two, and 1 when the adapter is not thread safe

// checkProfile refuses, when thread_safety_checks is on, a thread-profile
// worker whose adapter does not declare itself thread safe.
func checkProfile(pool *config.Pool, h *hello) error {
	if pool.WorkerProfile != config.ProfileThread || !pool.ThreadSafetyChecks || h.ThreadSafe {
		return nil
	}
	return fmt.Errorf("adapter %s is not declared thread safe (class attribute thread_safe = True) "+
		"and thread_safety_checks refuses it for worker_profile thread with %d threads: %w",
		h.Adapter, pool.ThreadsPerWorker, ErrNotThreadSafe)
}

// capacityOf is how many requests at once the pool offers a worker that said
// h at its handshake, at most slots.
func capacityOf(pool *config.Pool, h *hello, slots int) int {
	n := pool.Concurrency()
	reported := max(h.Threads, 1)
	switch pool.CapacityStrategy {
	case config.CapacityProfile:
		n = reported
	case config.CapacityHybrid:
		n = min(n, reported)
	}
	if pool.CapacityStrategy != config.CapacityPool && !h.ThreadSafe {
		n = 1
	}
	return max(1, min(n, slots))
}

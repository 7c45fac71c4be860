package snakepit

import (
	"context"
	"fmt"
	"time"

	"github.com/snakepit-go/snakepit/schemas"
)

// readyPoll is how often AwaitReady looks again.
const readyPoll = 20 * time.Millisecond

// AwaitReady waits until every pool has all its workers up (a live process
// that finished its handshake, busy or idle), or timeout passes (zero means
// DefaultAwaitTimeout) and returns a *Error of category timeout, reason
// pool_initialization_timeout. A remote runtime waits for at least one agent
// to answer and for every pool it reports, plus the pools of Options.Config
// when one was given.
func (rt *Runtime) AwaitReady(ctx context.Context, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultAwaitTimeout
	}
	if rt.host != nil && !rt.cfg.PoolingEnabled {
		return schemas.NewError(CategoryPool, ReasonPoolNotFound,
			"pooling_enabled is false: the embedded runtime started no pool")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		missing := rt.notReady(ctx)
		if missing == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return schemas.NewError(CategoryTimeout, ReasonPoolInitializationTimeout,
				"pools not ready within %v: %s", timeout, missing)
		case <-time.After(readyPoll):
		}
	}
}

// notReady describes what is not ready yet; empty means everything is.
func (rt *Runtime) notReady(ctx context.Context) string {
	if rt.stopped() {
		return "runtime stopped"
	}
	if rt.host != nil {
		for _, p := range rt.localPools() {
			if !p.Ready() {
				return describe(p.Stats())
			}
		}
		return ""
	}
	pools, err := rt.poolStats(ctx)
	if err != nil {
		return err.Error()
	}
	return remoteNotReady(pools, rt.wantPools)
}

func describe(s *schemas.PoolStats) string {
	return fmt.Sprintf("pool %s has %d of %d workers up", s.Pool, s.Available+s.Busy, s.Workers)
}

// remoteNotReady checks a fleet's reports: every reported pool fully up, and
// every pool of want reported at least once.
func remoteNotReady(pools []*schemas.PoolStats, want []string) string {
	if len(pools) == 0 {
		return "no agent reports a pool"
	}
	seen := map[string]bool{}
	for _, p := range pools {
		if p.Workers == 0 || p.Available+p.Busy < p.Workers {
			return describe(p)
		}
		seen[p.Pool] = true
	}
	for _, w := range want {
		if !seen[w] {
			return fmt.Sprintf("no agent serves pool %s", w)
		}
	}
	return ""
}

// AwaitReady is Runtime.AwaitReady on the process-wide runtime.
func AwaitReady(ctx context.Context, timeout time.Duration) error {
	rt, err := Current()
	if err != nil {
		return fmt.Errorf("await ready: %w", err)
	}
	return rt.AwaitReady(ctx, timeout)
}

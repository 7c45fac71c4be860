package dispatch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/snakepit-go/snakepit/schemas"
)

// DefaultReadyTimeout bounds AwaitReady when ctx has no deadline (the
// reference's await_ready default).
const DefaultReadyTimeout = 15 * time.Second

// ReasonNotReady is the reason of AwaitReady's timeout error.
const ReasonNotReady = "pool_not_ready"

// readyPoll separates two looks at the fleet.
const readyPoll = 50 * time.Millisecond

// NotReady is a pool of one agent without every worker up, or (AgentID empty)
// a pool that was asked for and no agent serves.
type NotReady struct {
	AgentID string `json:"agent_id,omitempty"`
	Pool    string `json:"pool"`
	// Up counts workers that finished their handshake and take requests.
	Up      uint32 `json:"up"`
	Workers uint32 `json:"workers"`
}

func (n NotReady) String() string {
	if n.AgentID == "" {
		return fmt.Sprintf("pool %s: no agent serves it", n.Pool)
	}
	return fmt.Sprintf("pool %s on agent %s: %d of %d workers up", n.Pool, n.AgentID, n.Up, n.Workers)
}

// AwaitReady waits until every pool of every agent that answers has all its
// workers up (finished their handshake, idle or busy) and every pool named in
// pools is served by at least one agent. Agents that have not answered yet
// (still starting, or not running) are waited for only through pools. When
// ctx ends first (DefaultReadyTimeout without a deadline) it returns an *Error
// of category timeout, reason pool_not_ready, whose Details["not_ready"]
// lists the NotReady pools.
func (c *Client) AwaitReady(ctx context.Context, pools ...string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultReadyTimeout)
		defer cancel()
	}
	var last []NotReady // nil until some agent answered
	for {
		missing, err := c.notReady(ctx, pools)
		switch {
		case err == nil && len(missing) == 0:
			return nil
		case err == nil:
			last = missing
		case !isNoAgent(err):
			return fmt.Errorf("await ready: %w", err)
		}
		t := time.NewTimer(readyPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return notReadyError(last, pools)
		case <-t.C:
		}
	}
}

// notReady gathers the fleet once and lists what is not ready.
func (c *Client) notReady(ctx context.Context, want []string) ([]NotReady, error) {
	reports, err := c.Reports(ctx, false)
	if err != nil {
		return nil, err
	}
	var out []NotReady
	served := map[string]bool{}
	for _, r := range reports {
		for _, p := range r.Pools {
			served[p.Pool] = true
			if up := p.Available + p.Busy; p.Workers == 0 || up < p.Workers {
				out = append(out, NotReady{AgentID: r.AgentId, Pool: p.Pool, Up: up, Workers: p.Workers})
			}
		}
	}
	for _, name := range want {
		if !served[name] {
			out = append(out, NotReady{Pool: name})
		}
	}
	return out, nil
}

func isNoAgent(err error) bool {
	noAgent := &Error{Category: schemas.CategoryPool, Reason: schemas.ReasonPoolNotFound}
	return errors.Is(err, noAgent) || errors.Is(err, context.DeadlineExceeded)
}

func notReadyError(missing []NotReady, want []string) error {
	if missing == nil {
		// No agent answered at all.
		missing = []NotReady{}
		for _, name := range want {
			missing = append(missing, NotReady{Pool: name})
		}
	}
	parts := make([]string, 0, len(missing))
	for _, m := range missing {
		parts = append(parts, m.String())
	}
	msg := "no agent answered"
	if len(parts) > 0 {
		msg = strings.Join(parts, "; ")
	}
	return schemas.NewError(schemas.CategoryTimeout, ReasonNotReady, "pools not ready: %s", msg).
		WithDetail("not_ready", missing)
}

// Package agent supervises local Python worker processes and runs the local pools:
// spawn, handshake, restart with backoff, the bounded request queue, worker
// selection and stats. It knows nothing of NATS: requests arrive as
// schemas.Request values and leave as schemas.Result values or *schemas.Error.
package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/rs/zerolog"

	"github.com/snakepit-go/snakepit/config"
)

// Agent owns the pools of one host.
type Agent struct {
	id       string
	stateDir string
	log      zerolog.Logger
	pools    []*Pool
}

// Options are what an agent needs besides its configuration.
type Options struct {
	AgentID    string
	RuntimeDir string
	// StateDir keeps a record of every worker process; Start ends what a
	// previous agent on the same dir left running. Empty: neither.
	StateDir string
	Log      zerolog.Logger
}

// New returns an agent whose pools have not started.
func New(cfg *config.Config, opts Options) (*Agent, error) {
	// The caller's logger already names the agent.
	a := &Agent{id: opts.AgentID, stateDir: opts.StateDir, log: opts.Log}
	for _, pc := range cfg.Pools {
		p, err := NewPool(pc, PoolOptions{
			AgentID: opts.AgentID, RuntimeDir: opts.RuntimeDir, StateDir: opts.StateDir, Log: a.log,
		})
		if err != nil {
			return nil, err
		}
		a.pools = append(a.pools, p)
	}
	return a, nil
}

// ID returns the agent id.
func (a *Agent) ID() string { return a.id }

// Pools returns the agent's pools in configuration order.
func (a *Agent) Pools() []*Pool { return a.pools }

// Start ends the leftovers of a previous run on the state dir, then starts every
// pool at once and waits for all; on any failure it stops the others and returns
// the errors joined.
func (a *Agent) Start(ctx context.Context) error {
	if killed := endLeftovers(a.stateDir, a.log); len(killed) > 0 {
		a.log.Info().Ints(keyPIDs, killed).Msg("ended leftovers of a previous run")
	}
	errs := make([]error, len(a.pools))
	var wg sync.WaitGroup
	for i, p := range a.pools {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = p.Start(ctx) }()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		a.Stop(context.Background())
		return fmt.Errorf("start agent %s: %w", a.id, err)
	}
	return nil
}

// Stop stops every pool; see Pool.Stop.
func (a *Agent) Stop(ctx context.Context) {
	var wg sync.WaitGroup
	for _, p := range a.pools {
		wg.Add(1)
		go func() { defer wg.Done(); p.Stop(ctx) }()
	}
	wg.Wait()
}

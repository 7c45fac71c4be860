package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/snakepit-go/snakepit/dispatch"
)

const awaitReadyUsage = "await-ready [--timeout D] [--pool P]..."

// runAwaitReady waits until every pool of every agent has all its workers up,
// or prints which pools do not and exits 1.
func runAwaitReady(e *env, args []string) int {
	fs := e.subFlags("await-ready", awaitReadyUsage)
	timeout := fs.Duration("timeout", dispatch.DefaultReadyTimeout, "how long to wait")
	var pools []string
	fs.Func("pool", "also wait until some agent serves this pool (repeatable)", func(v string) error {
		pools = append(pools, v)
		return nil
	})
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		if err == nil {
			fs.Usage()
		}
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	c, err := e.clientWithin(ctx)
	if err != nil {
		return e.fail(err)
	}
	if err := c.AwaitReady(ctx, pools...); err != nil {
		return e.printNotReady(err)
	}
	return e.printReady(c)
}

// clientWithin connects, retrying while ctx lasts: the agent that embeds the
// server may still be starting.
func (e *env) clientWithin(ctx context.Context) (*dispatch.Client, error) {
	for {
		c, err := e.client()
		if err == nil {
			return c, nil
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}

func (e *env) printNotReady(err error) int {
	var de *dispatch.Error
	if !errors.As(err, &de) || de.Reason != dispatch.ReasonNotReady {
		return e.printError(err)
	}
	fmt.Fprintf(e.stderr, "snakectl: not ready\n")
	missing, _ := de.Details["not_ready"].([]dispatch.NotReady)
	for _, m := range missing {
		fmt.Fprintf(e.stderr, "  %s\n", m)
	}
	if len(missing) == 0 {
		fmt.Fprintf(e.stderr, "  no agent answered\n")
	}
	return exitError
}

// printReady prints each pool's workers, summed over the agents.
func (e *env) printReady(c *dispatch.Client) int {
	ctx, cancel := timeoutContext(0)
	defer cancel()
	reports, err := c.Reports(ctx, false)
	if err != nil {
		return e.printError(err)
	}
	up := map[string]uint32{}
	agents := map[string]int{}
	for _, r := range reports {
		for _, p := range r.Pools {
			up[p.Pool] += p.Workers
			agents[p.Pool]++
		}
	}
	names := make([]string, 0, len(up))
	for n := range up {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(e.stdout, "ready\n")
	for _, n := range names {
		fmt.Fprintf(e.stdout, "  pool %s: %d workers up on %d agents\n", n, up[n], agents[n])
	}
	return exitOK
}

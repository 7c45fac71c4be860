package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// caller makes one call of a measured kind; an error counts against the run.
type caller func(ctx context.Context) error

// sequential makes n calls one after another and returns how long each took.
// It stops at the first error: a latency series with failures means nothing.
func sequential(ctx context.Context, n int, call caller) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	for i := range n {
		if err := ctx.Err(); err != nil {
			return out, fmt.Errorf("sequential call %d: %w", i, err)
		}
		began := time.Now()
		if err := call(ctx); err != nil {
			return out, fmt.Errorf("sequential call %d: %w", i, err)
		}
		out = append(out, time.Since(began))
	}
	return out, nil
}

// loopResult is what a closed-loop run did.
type loopResult struct {
	calls   int64
	errors  int64
	elapsed time.Duration
	first   error
}

// rate is successful calls per second.
func (r loopResult) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.calls) / r.elapsed.Seconds()
}

// closedLoop runs conc clients, each calling again as soon as its call returns,
// until limit calls were made or d has passed, whichever comes first. Client i
// calls mk(i).
func closedLoop(ctx context.Context, conc int, d time.Duration, limit int64,
	mk func(i int) caller) loopResult {
	var issued, done, failed atomic.Int64
	var firstErr error
	var once sync.Once
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	began := time.Now()
	for i := range conc {
		call := mk(i)
		wg.Go(func() {
			for issued.Add(1) <= limit && time.Now().Before(deadline) && ctx.Err() == nil {
				if err := call(ctx); err != nil {
					failed.Add(1)
					once.Do(func() { firstErr = err })
					continue
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	return loopResult{
		calls: done.Load(), errors: failed.Load(), elapsed: time.Since(began), first: firstErr,
	}
}

// checked turns a run with failures into an error naming what ran.
func checked(what string, r loopResult) (loopResult, error) {
	if r.errors > 0 {
		return r, fmt.Errorf("%s: %d of %d calls failed, first: %w",
			what, r.errors, r.errors+r.calls, r.first)
	}
	return r, nil
}

// sampler reads a number (an RSS) every interval until stopped and keeps the
// largest.
type sampler struct {
	stop chan struct{}
	done chan struct{}
	peak atomic.Int64
}

func startSampler(interval time.Duration, read func() (int64, error)) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if v, err := read(); err == nil && v > s.peak.Load() {
				s.peak.Store(v)
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Stop ends sampling and returns the largest value read.
func (s *sampler) Stop() int64 {
	close(s.stop)
	<-s.done
	return s.peak.Load()
}

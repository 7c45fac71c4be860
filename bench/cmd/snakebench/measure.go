package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"
)

// Names of the latency series and throughput variants.
const (
	seriesNATS    = "nats"    // bare request/reply to a Go echo responder
	seriesPipe    = "pipe"    // bare round trip to a Python echo child
	seriesPlain   = "plain"   // ping through the agent
	seriesSession = "session" // ping through the agent with Snakepit-Session
	seriesFloor   = "floor"   // NATS responder handing to 2 echo children
	seriesRuntime = "runtime" // ping on the real worker runtime over its pipes
)

// Shape of the runs.
const (
	latencyBlocks    = 5 // series alternate in blocks so drift hits all alike
	latencyWarmup    = 200
	throughputRounds = 5 // variants alternate in rounds at each concurrency
	leakWarmup       = 10_000
	leakConcurrency  = 64
	streamChunks     = 256
	chunkSize        = 256 << 10
	streamWindow     = 32 // the worker runtime's default stream window
)

var concurrencies = []int{1, 8, 64}

// results is everything one run measured, before it is judged.
type results struct {
	pythonVersion string
	pythonStart   time.Duration
	pythonStarts  []time.Duration
	batchStart    time.Duration // startupBatch runtimes started at once
	startup       time.Duration
	startupPoolMs int64

	lat  map[string][]time.Duration
	tput map[string]map[int]float64
	// rounds are the rates of each throughput round; tput is their median.
	rounds map[string]map[int][]float64

	rssIdle, rssBase, rssPeak, rssEnd int64
	leak                              loopResult
	// agentCPU and workerCPU are the CPU time spent during the leak run.
	agentCPU, workerCPU time.Duration
	// pythonCPU is the CPU time per call of the Python processes of each
	// throughput variant, over every concurrency.
	pythonCPU map[string]time.Duration
	workerRSS []int64
	echoRSS   int64

	publish publishRate
	stream  streamResult
	// leases is how many lease records the session calls left in KV.
	leases uint64

	notes    []string
	warnings []string
}

func newResults() *results {
	return &results{
		lat: map[string][]time.Duration{}, tput: map[string]map[int]float64{},
		rounds:    map[string]map[int][]float64{},
		pythonCPU: map[string]time.Duration{},
	}
}

// namedCaller is one latency series or throughput variant; mk gives the caller
// of the i-th concurrent client; python are the Python processes that answer.
type namedCaller struct {
	name   string
	mk     func(i int) caller
	python []int
}

func same(c caller) func(int) caller { return func(int) caller { return c } }

func (r *rig) callers() []namedCaller {
	echo, direct := r.echo.pids(), r.direct.pids()
	return []namedCaller{
		{seriesNATS, same(natsCaller(r.floorNC, subjectEcho, pingArgs)), nil},
		{seriesPipe, same(r.pipe), echo},
		{seriesRuntime, same(r.runtime), direct},
		{seriesFloor, same(natsCaller(r.floorNC, subjectComposed, pingArgs)), echo},
		{seriesPlain, same(r.plain), r.workers},
		{seriesSession, func(i int) caller { return r.session(fmt.Sprintf("bench-%d", i)) },
			r.workers},
	}
}

// latency makes o.samples sequential calls of each series except the composed
// floor, alternating series in blocks.
func (r *rig) latency(ctx context.Context) error {
	var series []namedCaller
	for _, c := range r.callers() {
		if c.name != seriesFloor {
			series = append(series, c)
		}
	}
	for _, s := range series {
		if _, err := sequential(ctx, latencyWarmup, s.mk(0)); err != nil {
			return fmt.Errorf("warm up %s: %w", s.name, err)
		}
	}
	per := max(r.o.samples/latencyBlocks, 1)
	for range latencyBlocks {
		for _, s := range series {
			d, err := sequential(ctx, per, s.mk(0))
			if err != nil {
				return fmt.Errorf("latency of %s: %w", s.name, err)
			}
			r.res.lat[s.name] = append(r.res.lat[s.name], d...)
		}
	}
	return nil
}

// throughput runs every variant at each concurrency for throughputRounds rounds
// of o.round, alternating variants and starting each round one variant further
// on, so that none always follows the same one. A variant's rate is the median
// of its rounds' rates: a busy moment on the machine that hits one round of one
// variant moves neither it nor the ratios.
func (r *rig) throughput(ctx context.Context) error {
	variants := r.callers()
	for _, v := range variants {
		warm := r.loop(ctx, 8, 200*time.Millisecond, v)
		if _, err := checked("warm up "+v.name, warm); err != nil {
			return err
		}
		r.res.tput[v.name] = map[int]float64{}
		r.res.rounds[v.name] = map[int][]float64{}
	}
	allCalls := map[string]int64{}
	for _, c := range concurrencies {
		rates := map[string][]float64{}
		for round := range throughputRounds {
			for k := range variants {
				v := variants[(round+k)%len(variants)]
				cpu0 := cpuOf(v.python)
				lr, err := checked(fmt.Sprintf("%s at concurrency %d", v.name, c),
					r.loop(ctx, c, r.o.round, v))
				if err != nil {
					return err
				}
				r.res.pythonCPU[v.name] += sum(cpuOf(v.python)) - sum(cpu0)
				allCalls[v.name] += lr.calls
				rates[v.name] = append(rates[v.name], lr.rate())
			}
		}
		for _, v := range variants {
			r.res.tput[v.name][c] = median(rates[v.name])
			r.res.rounds[v.name][c] = rates[v.name]
		}
		r.log.Info().Int("concurrency", c).Float64("plain_per_s", r.res.tput[seriesPlain][c]).
			Float64("floor_per_s", r.res.tput[seriesFloor][c]).Msg("throughput measured")
	}
	for name, n := range allCalls {
		r.res.pythonCPU[name] /= time.Duration(max(n, 1))
	}
	return nil
}

// median is the middle of xs (the mean of the two middle ones for an even
// count); xs is left as it was.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

func sum(d []time.Duration) time.Duration {
	var t time.Duration
	for _, v := range d {
		t += v
	}
	return t
}

func (r *rig) loop(ctx context.Context, conc int, d time.Duration, v namedCaller) loopResult {
	return closedLoop(ctx, conc, d, math.MaxInt64, v.mk)
}

// leakRun warms the agent up, then makes o.leakCalls pings at concurrency 64
// while sampling its RSS: the peak is the RSS under load, the end against the
// start after warm-up is the growth.
func (r *rig) leakRun(ctx context.Context) error {
	mk := same(r.plain)
	if _, err := checked("leak warm-up",
		closedLoop(ctx, leakConcurrency, time.Minute, leakWarmup, mk)); err != nil {
		return err
	}
	pids := r.workers
	var err error
	if r.res.rssBase, err = r.agent.rss(); err != nil {
		return err
	}
	cpu0 := cpuOf(append([]int{r.agent.pid()}, pids...))
	s := startSampler(100*time.Millisecond, r.agent.rss)
	lr, err := checked("leak run",
		closedLoop(ctx, leakConcurrency, 3*time.Minute, r.o.leakCalls, mk))
	r.res.rssPeak = s.Stop()
	r.res.leak = lr
	cpu1 := cpuOf(append([]int{r.agent.pid()}, pids...))
	if err != nil {
		return err
	}
	if lr.calls < r.o.leakCalls {
		return fmt.Errorf("leak run: %d of %d calls within 3m", lr.calls, r.o.leakCalls)
	}
	r.res.agentCPU = cpu1[0] - cpu0[0]
	for i := 1; i < len(cpu0); i++ {
		r.res.workerCPU += cpu1[i] - cpu0[i]
	}
	r.res.rssEnd, err = r.agent.rss()
	return err
}

// cpuOf reads the CPU time of each pid; a process that cannot be read counts 0.
func cpuOf(pids []int) []time.Duration {
	out := make([]time.Duration, len(pids))
	for i, pid := range pids {
		out[i], _ = readCPU(pid)
	}
	return out
}

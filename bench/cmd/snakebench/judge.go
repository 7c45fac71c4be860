package main

import (
	"fmt"
	"slices"
)

const (
	unitMicros = "µs"
	unitRate   = "calls/s"
	unitMB     = "MB"
)

// leakTolerance is the RSS growth over the leak run still read as none: about
// what two reads of a steady Go process differ by.
const leakTolerance = 2.0 // MB

// buildFigures judges the results against their floors and the targets.
func buildFigures(res *results) []*figure {
	var out []*figure
	out = append(out, latencyFigures(res)...)
	out = append(out, throughputFigures(res)...)
	out = append(out, runtimeFigures(res)...)
	out = append(out, sessionFigures(res)...)
	out = append(out, streamFigures(res)...)
	out = append(out, startupFigure(res))
	out = append(out, memoryFigures(res)...)
	for _, f := range out {
		f.judge()
	}
	return out
}

func latencyFigures(res *results) []*figure {
	plain := sortedCopy(res.lat[seriesPlain])
	nats, pipe := sortedCopy(res.lat[seriesNATS]), sortedCopy(res.lat[seriesPipe])
	rows := []struct {
		name, label string
		p           float64
		t           *target
	}{
		{"ping_p50", "sequential ping p50", 0.5, ratioAtMost(1.5, "≤ 1.5 × floor")},
		{"ping_p99", "sequential ping p99", 0.99, ratioAtMost(3, "≤ 3 × floor")},
		{"ping_p99_9", "sequential ping p99.9", 0.999, nil},
	}
	var out []*figure
	for _, r := range rows {
		floor := micros(quantile(nats, r.p)) + micros(quantile(pipe, r.p))
		out = append(out, &figure{
			Name: r.name, Label: r.label, Unit: unitMicros,
			Value: num(micros(quantile(plain, r.p))), Floor: num(floor),
			FloorOf: "bare NATS + bare pipe, same percentile", Target: r.t,
		})
	}
	return out
}

func throughputFigures(res *results) []*figure {
	var out []*figure
	for _, c := range concurrencies {
		f := &figure{
			Name: fmt.Sprintf("throughput_c%d", c), Unit: unitRate,
			Label: fmt.Sprintf("throughput, concurrency %d, %d workers", c, benchWorkers),
			Value: num(res.tput[seriesPlain][c]), Floor: num(res.tput[seriesFloor][c]),
			FloorOf: "NATS responder → 2 bare pipe children",
		}
		if c == 64 {
			f.Target = ratioAtLeast(0.7, "≥ 0.7 × floor")
		}
		out = append(out, f)
	}
	return out
}

// runtimeFigures show the real worker runtime alone, over its pipes with no
// NATS and no agent, against the bare echo: where the product's time goes.
func runtimeFigures(res *results) []*figure {
	rt, pipe := sortedCopy(res.lat[seriesRuntime]), sortedCopy(res.lat[seriesPipe])
	return []*figure{
		{Name: "runtime_p50", Label: "worker runtime alone, ping p50", Unit: unitMicros,
			Value: num(micros(quantile(rt, 0.5))), Floor: num(micros(quantile(pipe, 0.5))),
			FloorOf: "bare pipe p50"},
		{Name: "runtime_throughput_c64", Label: "worker runtime alone, 2 of them, concurrency 64",
			Unit: unitRate, Value: num(res.tput[seriesRuntime][64]),
			Floor: num(res.tput[seriesPipe][64]), FloorOf: "2 bare pipe children"},
		{Name: "runtime_cpu_per_call", Label: "worker runtime alone, CPU per call",
			Unit: unitMicros, Value: num(micros(res.pythonCPU[seriesRuntime])),
			Floor: num(micros(res.pythonCPU[seriesPipe])), FloorOf: "bare echo child",
			Note: "user+system time of the Python processes over the throughput runs"},
	}
}

// sessionNote says what the session figures measured.
func sessionNote(res *results) string {
	if res.leases > 0 {
		return fmt.Sprintf("session calls took leases: %d records in KV bucket %s",
			res.leases, sessionBucket)
	}
	return "session leases are not implemented yet (no records in KV bucket " + sessionBucket +
		"): measures the Snakepit-Session header passing through the agent to the worker"
}

func sessionFigures(res *results) []*figure {
	note := sessionNote(res)
	plain, sess := sortedCopy(res.lat[seriesPlain]), sortedCopy(res.lat[seriesSession])
	out := []*figure{{
		Name: "session_p50", Label: "session ping p50", Unit: unitMicros,
		Value: num(micros(quantile(sess, 0.5))), Floor: num(micros(quantile(plain, 0.5))),
		FloorOf: "plain ping p50", Target: ratioAtMost(1.1, "≤ 1.1 × plain"), Note: note,
	}}
	for _, c := range concurrencies {
		out = append(out, &figure{
			Name: fmt.Sprintf("session_throughput_c%d", c), Unit: unitRate,
			Label: fmt.Sprintf("session throughput, concurrency %d", c),
			Value: num(res.tput[seriesSession][c]), Floor: num(res.tput[seriesPlain][c]),
			FloorOf: "plain throughput", Target: ratioAtLeast(0.9, "≥ 0.9 × plain"),
			Note: note,
		})
	}
	return out
}

func streamFigures(res *results) []*figure {
	rate := &figure{
		Name: "stream_chunks_per_s", Label: "stream, 256 KiB chunks", Unit: "chunks/s",
		Floor: num(res.publish.PerSecond), FloorOf: "bare NATS publish, same window",
		Target: ratioAtLeast(0.5, "≥ 0.5 × floor"),
	}
	mb := &figure{
		Name: "stream_mb_per_s", Label: "stream bytes, 256 KiB chunks", Unit: "MB/s",
		Floor: num(res.publish.MBPerS), FloorOf: "bare NATS publish, same window",
		Target: ratioAtLeast(0.5, "≥ 0.5 × floor"),
	}
	if res.stream.Measured {
		rate.Value, mb.Value = num(res.stream.PerSecond), num(res.stream.MBPerS)
		rate.Note = fmt.Sprintf("stream_blob (no work per chunk); stream_bytes would add %.2f ms "+
			"a chunk making random bytes and their digest", res.stream.AdapterMsPerChunk)
	} else {
		rate.Note, mb.Note = res.stream.Why, res.stream.Why
	}
	return []*figure{rate, mb}
}

func startupFigure(res *results) *figure {
	return &figure{
		Name: "startup_16_workers", Unit: "ms",
		Label:   fmt.Sprintf("agent start to %d workers ready", startupWorkers),
		Value:   num(millis(res.startup)),
		Floor:   num(millis(startupLowerBound(res.pythonStart))),
		FloorOf: fmt.Sprintf("(batches-1) × %v + one Python start", startupDelay),
		Target:  ratioAtMost(1.2, "≤ 1.2 × floor"),
		Note: fmt.Sprintf("batches of %d, %v apart; the pool's own start %d ms; "+
			"one Python start (median of %d) %.0f ms; %d started at once %.0f ms",
			startupBatch, startupDelay, res.startupPoolMs, pythonStarts,
			millis(res.pythonStart), startupBatch, millis(res.batchStart)),
	}
}

func memoryFigures(res *results) []*figure {
	growth := megabytes(res.rssEnd - res.rssBase)
	perCall := float64(res.rssEnd-res.rssBase) / float64(max(res.leak.calls, 1))
	return []*figure{
		{Name: "agent_rss_idle", Label: "agent RSS idle", Unit: unitMB,
			Value: num(megabytes(res.rssIdle)), Target: valueBelow(40, "< 40 MB"),
			Note: "the agent process: embedded NATS with JetStream, pool, 2 workers"},
		{Name: "agent_rss_load", Label: "agent RSS under load (peak)", Unit: unitMB,
			Value: num(megabytes(res.rssPeak)), Floor: num(megabytes(res.rssIdle)),
			FloorOf: "agent idle", Note: fmt.Sprintf("concurrency %d", leakConcurrency)},
		{Name: "agent_rss_growth", Unit: unitMB,
			Label: fmt.Sprintf("agent RSS growth over %d calls", res.leak.calls),
			Value: num(growth), Target: valueAtMost(leakTolerance, "≤ 2 MB (none)"),
			Note: fmt.Sprintf("from %.1f MB after %d warm-up calls to %.1f MB; %.1f bytes per call",
				megabytes(res.rssBase), leakWarmup, megabytes(res.rssEnd), perCall)},
		{Name: "agent_cpu_per_call", Label: "agent CPU per call", Unit: unitMicros,
			Value: num(micros(res.agentCPU) / float64(max(res.leak.calls, 1))),
			Note:  "user+system time of the agent (embedded NATS too) over the leak run"},
		{Name: "worker_cpu_per_call", Label: "Python worker CPU per call", Unit: unitMicros,
			Value:   num(micros(res.workerCPU) / float64(max(res.leak.calls, 1))),
			Floor:   num(micros(res.pythonCPU[seriesPipe])),
			FloorOf: "bare echo child",
			Note:    "user+system time of the 2 workers over the leak run"},
		{Name: "python_worker_rss", Label: "Python worker RSS (largest)", Unit: unitMB,
			Value: num(megabytes(slices.Max(res.workerRSS))), Floor: num(megabytes(res.echoRSS)),
			FloorOf: "bare Python echo child"},
	}
}

// seriesData is every series as measured, floors included, for the JSON.
type seriesData struct {
	Latency    map[string]summary         `json:"latency_us"`
	Throughput map[string]map[int]float64 `json:"throughput_calls_per_s"`
	// Rounds are the rates of each round, in the order they ran; Throughput
	// is their median.
	Rounds        map[string]map[int][]float64 `json:"throughput_rounds_calls_per_s"`
	PythonStartMs []float64                    `json:"python_start_ms"`
	BatchStartMs  float64                      `json:"batch_start_ms"`
	Publish       publishRate                  `json:"nats_publish_256k"`
}

func seriesOf(res *results) seriesData {
	f := seriesData{Latency: map[string]summary{}, Throughput: map[string]map[int]float64{},
		Rounds:  map[string]map[int][]float64{},
		Publish: res.publish, BatchStartMs: *num(millis(res.batchStart))}
	for name, d := range res.lat {
		f.Latency[name] = summarize(d)
	}
	for name, byConc := range res.tput {
		f.Throughput[name] = map[int]float64{}
		for c, v := range byConc {
			f.Throughput[name][c] = *num(v)
		}
	}
	for name, byConc := range res.rounds {
		f.Rounds[name] = map[int][]float64{}
		for c, rates := range byConc {
			for _, v := range rates {
				f.Rounds[name][c] = append(f.Rounds[name][c], *num(v))
			}
		}
	}
	for _, d := range res.pythonStarts {
		f.PythonStartMs = append(f.PythonStartMs, *num(millis(d)))
	}
	return f
}

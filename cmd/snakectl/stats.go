package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"text/tabwriter"

	"github.com/snakepit-go/snakepit/schemas"
)

// statsMap is the reference's stats map.
type statsMap struct {
	Requests      uint64 `json:"requests"`
	Queued        uint64 `json:"queued"`
	Errors        uint64 `json:"errors"`
	QueueTimeouts uint64 `json:"queue_timeouts"`
	PoolSaturated uint64 `json:"pool_saturated"`
	Workers       uint64 `json:"workers"`
	Available     uint64 `json:"available"`
	Busy          uint64 `json:"busy"`
	// Beyond the reference's map: worker replacements and crash loops.
	Restarts     uint64 `json:"restarts"`
	Recycles     uint64 `json:"recycles"`
	CrashLooping uint64 `json:"crash_looping"`
}

func (m *statsMap) add(p *schemas.PoolStats) {
	m.Requests += p.Requests
	m.Queued += uint64(p.Queued)
	m.Errors += p.Errors
	m.QueueTimeouts += p.QueueTimeouts
	m.PoolSaturated += p.PoolSaturated
	m.Workers += uint64(p.Workers)
	m.Available += uint64(p.Available)
	m.Busy += uint64(p.Busy)
	m.Restarts += p.Restarts
	m.Recycles += p.Recycles
	m.CrashLooping += uint64(p.CrashLooping)
}

type statsOutput struct {
	Total  statsMap             `json:"total"`
	Pools  map[string]*statsMap `json:"pools"`
	Agents int                  `json:"agents"`
}

// runStats prints the fleet's stats per pool and in total.
func runStats(e *env, args []string) int {
	c, ctx, asJSON, code := e.listing("stats", args)
	if c == nil {
		return code
	}
	reports, err := c.Reports(ctx, false)
	if err != nil {
		return e.printError(err)
	}
	out := statsOutput{Pools: map[string]*statsMap{}, Agents: len(reports)}
	for _, r := range reports {
		for _, p := range r.Pools {
			if out.Pools[p.Pool] == nil {
				out.Pools[p.Pool] = &statsMap{}
			}
			out.Pools[p.Pool].add(p)
			out.Total.add(p)
		}
	}
	if asJSON {
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Fprintf(e.stdout, "%s\n", b)
		return exitOK
	}
	names := make([]string, 0, len(out.Pools))
	for n := range out.Pools {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tREQUESTS\tQUEUED\tERRORS\tQUEUE_TIMEOUTS\tPOOL_SATURATED\tWORKERS\tAVAILABLE\tBUSY"+
		"\tRESTARTS\tRECYCLES\tCRASH_LOOPING")
	row := func(name string, m *statsMap) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", name, m.Requests, m.Queued,
			m.Errors, m.QueueTimeouts, m.PoolSaturated, m.Workers, m.Available, m.Busy,
			m.Restarts, m.Recycles, m.CrashLooping)
	}
	for _, n := range names {
		row(n, out.Pools[n])
	}
	row("total", &out.Total)
	tw.Flush()
	return exitOK
}

package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
)

type agentRow struct {
	Agent    string   `json:"agent_id"`
	Host     string   `json:"host"`
	Pools    []string `json:"pools"`
	Workers  uint32   `json:"workers"`
	Busy     uint32   `json:"busy"`
	Version  string   `json:"version"`
	UptimeMs int64    `json:"uptime_ms"`
}

// runAgents lists every live agent from the registry.
func runAgents(e *env, args []string) int {
	c, ctx, asJSON, code := e.listing("agents", args)
	if c == nil {
		return code
	}
	records, err := c.Agents(ctx)
	if err != nil {
		return e.fail(err)
	}
	now := time.Now()
	rows := make([]agentRow, 0, len(records))
	for _, r := range records {
		rows = append(rows, agentRow{r.AgentId, r.Host, r.Pools, r.Workers, r.Busy, r.Version,
			now.Sub(time.UnixMilli(r.StartedUnixMs)).Milliseconds()})
	}
	if asJSON {
		b, _ := json.MarshalIndent(rows, "", "  ")
		fmt.Fprintf(e.stdout, "%s\n", b)
		return exitOK
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AGENT\tHOST\tPOOLS\tWORKERS\tBUSY\tVERSION\tUPTIME")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", r.Agent, r.Host, strings.Join(r.Pools, ","),
			r.Workers, r.Busy, r.Version, (time.Duration(r.UptimeMs) * time.Millisecond).Round(time.Second))
	}
	tw.Flush()
	return exitOK
}

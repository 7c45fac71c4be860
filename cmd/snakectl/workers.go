package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"text/tabwriter"
)

type workerRow struct {
	ID          string `json:"id"`
	Pool        string `json:"pool"`
	Agent       string `json:"agent"`
	PID         int32  `json:"pid"`
	State       string `json:"state"`
	Requests    uint64 `json:"requests"`
	Incarnation uint32 `json:"incarnation"`
}

// runWorkers prints every worker of the fleet.
func runWorkers(e *env, args []string) int {
	c, ctx, asJSON, code := e.listing("workers", args)
	if c == nil {
		return code
	}
	reports, err := c.Reports(ctx, true)
	if err != nil {
		return e.printError(err)
	}
	rows := []workerRow{}
	for _, r := range reports {
		for _, w := range r.Workers {
			rows = append(rows, workerRow{w.Id, w.Pool, w.AgentId, w.Pid, w.State, w.Requests, w.Incarnation})
		}
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Agent != rows[j].Agent {
			return rows[i].Agent < rows[j].Agent
		}
		return rows[i].ID < rows[j].ID
	})
	if asJSON {
		b, _ := json.MarshalIndent(rows, "", "  ")
		fmt.Fprintf(e.stdout, "%s\n", b)
		return exitOK
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPOOL\tAGENT\tPID\tSTATE\tREQUESTS\tINCARNATION")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%d\n", r.ID, r.Pool, r.Agent, r.PID, r.State, r.Requests, r.Incarnation)
	}
	tw.Flush()
	return exitOK
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/snakepit-go/snakepit/dispatch"
	"github.com/snakepit-go/snakepit/schemas"
)

const cleanupUsage = "cleanup [--agent ID] [--timeout D] [--json]"

// runCleanup ends every worker of the fleet (or of one agent) and prints what
// ended and what did not stop in time; exit 1 when something did not.
func runCleanup(e *env, args []string) int {
	fs := e.subFlags("cleanup", cleanupUsage)
	agentID := fs.String("agent", "", "only this agent")
	timeout := fs.Duration("timeout", dispatch.DefaultCleanupTimeout,
		"how long workers may finish what they run before they are terminated")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		if err == nil {
			fs.Usage()
		}
		return exitUsage
	}
	c, err := e.client()
	if err != nil {
		return e.fail(err)
	}
	reports, err := c.Cleanup(context.Background(), *agentID, *timeout)
	if *asJSON {
		e.printCleanupJSON(reports)
	} else {
		e.printCleanup(reports)
	}
	if err != nil {
		return e.printError(err)
	}
	for _, r := range reports {
		if r.Result != dispatch.CleanupOK {
			return exitError
		}
	}
	return exitOK
}

func (e *env) printCleanup(reports []*schemas.CleanupReport) {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AGENT\tRESULT\tWORKER\tPOOL\tPID\tENDED")
	for _, r := range reports {
		if len(r.Ended) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\n", r.AgentId, r.Result)
		}
		for _, w := range r.Ended {
			how := "exited"
			if !w.InTime {
				how = "terminated: did not stop in time"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", r.AgentId, r.Result, w.WorkerId, w.Pool, w.Pid, how)
		}
	}
	tw.Flush()
}

// cleanupJSON is one agent's report: the reference's result, ok or timeout
// with the list of what did not stop in time, and everything ended.
type cleanupJSON struct {
	Agent   string      `json:"agent"`
	Result  string      `json:"result"`
	Timeout []endedJSON `json:"timeout"`
	Ended   []endedJSON `json:"ended"`
}

type endedJSON struct {
	Worker string `json:"worker"`
	Pool   string `json:"pool"`
	PID    int32  `json:"pid"`
}

func (e *env) printCleanupJSON(reports []*schemas.CleanupReport) {
	out := []cleanupJSON{}
	for _, r := range reports {
		cj := cleanupJSON{Agent: r.AgentId, Result: r.Result}
		cj.Timeout, cj.Ended = []endedJSON{}, []endedJSON{}
		for _, w := range r.Ended {
			ej := endedJSON{Worker: w.WorkerId, Pool: w.Pool, PID: w.Pid}
			cj.Ended = append(cj.Ended, ej)
			if !w.InTime {
				cj.Timeout = append(cj.Timeout, ej)
			}
		}
		out = append(out, cj)
	}
	b, _ := json.MarshalIndent(out, "", "  ")
	fmt.Fprintf(e.stdout, "%s\n", b)
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/snakepit-go/snakepit/jetstream"
	"github.com/snakepit-go/snakepit/schemas"
	"github.com/snakepit-go/snakepit/sessions"
)

const sessionsUsage = "sessions ls [--pool P] [--json] | sessions show [--pool P] ID | sessions drop [--pool P] ID"

// runSessions lists, shows or drops session leases, reading the KV bucket.
func runSessions(e *env, args []string) int {
	if len(args) == 0 {
		fmt.Fprintf(e.stderr, "usage: snakectl %s\n", sessionsUsage)
		return exitUsage
	}
	fs := e.subFlags("sessions "+args[0], sessionsUsage)
	pool := fs.String("pool", "", "only this pool")
	asJSON := fs.Bool("json", false, "print JSON (ls)")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return exitUsage
	}
	verbs := map[string]struct {
		args int
		run  func(*env, []leaseRow, []string, bool) int
	}{
		"ls": {0, listSessions}, "show": {1, showSession}, "drop": {1, dropSession},
	}
	v, ok := verbs[args[0]]
	if !ok || len(pos) != v.args {
		fs.Usage()
		return exitUsage
	}
	rows, err := e.leases(*pool)
	if err != nil {
		return e.fail(err)
	}
	return v.run(e, rows, pos, *asJSON)
}

// leaseRow is one lease with its key and revision.
type leaseRow struct {
	key   string
	rev   uint64
	lease *schemas.Lease
}

func (e *env) leases(pool string) ([]leaseRow, error) {
	if _, err := e.client(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := jetstream.Lookup(ctx, e.nc, jetstream.SessionsBucket)
	if err != nil {
		return nil, err
	}
	e.kv = kv
	entries, err := kv.List(ctx)
	if err != nil {
		return nil, err
	}
	var rows []leaseRow
	for _, en := range entries {
		l := &schemas.Lease{}
		if protojson.Unmarshal(en.Value, l) != nil || (pool != "" && l.Pool != pool) {
			continue
		}
		rows = append(rows, leaseRow{key: en.Key, rev: en.Revision, lease: l})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].key < rows[j].key })
	return rows, nil
}

type sessionJSON struct {
	Session     string `json:"session"`
	Pool        string `json:"pool"`
	Agent       string `json:"agent"`
	Worker      string `json:"worker"`
	Incarnation uint32 `json:"incarnation"`
	AgeMs       int64  `json:"age_ms"`
	ExpiresInMs int64  `json:"expires_in_ms"`
	Key         string `json:"key"`
	Revision    uint64 `json:"revision"`
}

func toJSON(r leaseRow, now time.Time) sessionJSON {
	l := r.lease
	expires := time.UnixMilli(l.RenewedUnixMs).Add(time.Duration(l.TtlSeconds) * time.Second)
	return sessionJSON{
		Session: l.SessionId, Pool: l.Pool, Agent: l.AgentId, Worker: l.WorkerId,
		Incarnation: l.Incarnation, AgeMs: now.Sub(time.UnixMilli(l.CreatedUnixMs)).Milliseconds(),
		ExpiresInMs: max(expires.Sub(now).Milliseconds(), 0), Key: r.key, Revision: r.rev,
	}
}

func listSessions(e *env, rows []leaseRow, _ []string, asJSON bool) int {
	now := time.Now()
	out := make([]sessionJSON, 0, len(rows))
	for _, r := range rows {
		out = append(out, toJSON(r, now))
	}
	if asJSON {
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Fprintf(e.stdout, "%s\n", b)
		return exitOK
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tPOOL\tAGENT\tWORKER\tAGE\tEXPIRES_IN")
	for _, s := range out {
		fmt.Fprintf(tw, "%q\t%s\t%s\t%s\t%s\t%s\n", s.Session, s.Pool, s.Agent, s.Worker,
			roundMs(s.AgeMs), roundMs(s.ExpiresInMs))
	}
	tw.Flush()
	return exitOK
}

func roundMs(ms int64) time.Duration {
	return (time.Duration(ms) * time.Millisecond).Round(time.Second)
}

// matching returns the rows of session id, in any pool unless --pool narrowed it.
func matching(rows []leaseRow, id string) []leaseRow {
	var out []leaseRow
	for _, r := range rows {
		if _, sid, err := sessions.ParseKey(r.key); err == nil && sid == id {
			out = append(out, r)
		}
	}
	return out
}

func showSession(e *env, rows []leaseRow, pos []string, _ bool) int {
	found := matching(rows, pos[0])
	if len(found) == 0 {
		fmt.Fprintf(e.stderr, "snakectl: no session %q\n", pos[0])
		return exitError
	}
	now := time.Now()
	for _, r := range found {
		b, _ := json.MarshalIndent(toJSON(r, now), "", "  ")
		fmt.Fprintf(e.stdout, "%s\n", b)
	}
	return exitOK
}

func dropSession(e *env, rows []leaseRow, pos []string, _ bool) int {
	found := matching(rows, pos[0])
	if len(found) == 0 {
		fmt.Fprintf(e.stderr, "snakectl: no session %q\n", pos[0])
		return exitError
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, r := range found {
		if err := e.kv.Delete(ctx, r.key, r.rev); err != nil {
			return e.fail(err)
		}
		fmt.Fprintf(e.stdout, "dropped session %q of pool %s (agent %s, worker %s)\n",
			r.lease.SessionId, r.lease.Pool, r.lease.AgentId, r.lease.WorkerId)
	}
	return exitOK
}

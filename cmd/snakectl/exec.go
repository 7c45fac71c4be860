package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/snakepit-go/snakepit/dispatch"
)

const execUsage = "exec [--pool P] [--timeout D] [--session S] [--request-id ID] COMMAND [JSON]"

// runExec runs one command and prints its result as JSON (raw bytes as they are).
func runExec(e *env, args []string) int {
	fs := e.subFlags("exec", execUsage)
	pool := fs.String("pool", "default", "pool to run on")
	timeout := fs.Duration("timeout", dispatch.DefaultTimeout, "how long to wait for the result")
	session := fs.String("session", "", "session id")
	requestID := fs.String("request-id", "", "request id (default: generated)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return exitUsage
	}
	body, ok := commandArgs(e, fs, pos)
	if !ok {
		return exitUsage
	}
	c, err := e.client()
	if err != nil {
		return e.fail(err)
	}
	ctx, cancel := timeoutContext(*timeout)
	defer cancel()
	opts := []dispatch.CallOption{dispatch.WithTimeout(*timeout)}
	if *session != "" {
		opts = append(opts, dispatch.WithSession(*session))
	}
	if *requestID != "" {
		opts = append(opts, dispatch.WithRequestID(*requestID))
	}
	r, err := c.Call(ctx, *pool, pos[0], body, opts...)
	if err != nil {
		return e.printError(err)
	}
	if r.Raw {
		_, _ = e.stdout.Write(r.Data)
		return exitOK
	}
	var out bytes.Buffer
	if json.Indent(&out, r.Data, "", "  ") != nil {
		out.Reset()
		out.Write(r.Data)
	}
	out.WriteByte('\n')
	_, _ = e.stdout.Write(out.Bytes())
	return exitOK
}

// printError writes an error reply as JSON on stderr.
func (e *env) printError(err error) int {
	var se *dispatch.Error
	if !errors.As(err, &se) {
		return e.fail(err)
	}
	b, _ := json.MarshalIndent(se, "", "  ")
	fmt.Fprintf(e.stderr, "%s\n", b)
	return exitError
}

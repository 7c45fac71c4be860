package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/snakepit-go/snakepit/dispatch"
)

const streamUsage = "stream [--pool P] [--session S] [--timeout D] COMMAND [JSON]"

// exitInterrupted is the status after SIGINT or SIGTERM cancelled the stream.
const exitInterrupted = 130

// runStream prints one chunk per line: JSON compactly, raw bytes as base64.
func runStream(e *env, args []string) int {
	fs := e.subFlags("stream", streamUsage)
	pool := fs.String("pool", "default", "pool to run on")
	session := fs.String("session", "", "session id")
	timeout := fs.Duration("timeout", dispatch.DefaultStreamTimeout, "how long the whole stream may take")
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := []dispatch.CallOption{dispatch.WithTimeout(*timeout)}
	if *session != "" {
		opts = append(opts, dispatch.WithSession(*session))
	}
	err = c.ExecuteStream(ctx, *pool, pos[0], body, e.printChunk, opts...)
	switch {
	case err == nil:
		return exitOK
	case ctx.Err() != nil:
		fmt.Fprintln(e.stderr, "snakectl: stream interrupted")
		return exitInterrupted
	}
	return e.printError(err)
}

func (e *env) printChunk(c *dispatch.Chunk) error {
	if c.Raw {
		fmt.Fprintln(e.stdout, base64.StdEncoding.EncodeToString(c.Data))
		return nil
	}
	fmt.Fprintf(e.stdout, "%s\n", c.Data)
	return nil
}

// commandArgs checks COMMAND [JSON]; it prints usage and reports false if they
// are wrong.
func commandArgs(e *env, fs *flag.FlagSet, pos []string) (any, bool) {
	if len(pos) < 1 || len(pos) > 2 {
		fs.Usage()
		return nil, false
	}
	if len(pos) == 1 {
		return nil, true
	}
	if !json.Valid([]byte(pos[1])) {
		fmt.Fprintf(e.stderr, "snakectl: arguments are not valid JSON: %s\n", pos[1])
		return nil, false
	}
	return json.RawMessage(pos[1]), true
}

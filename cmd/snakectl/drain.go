package main

import "fmt"

// runDrain asks one agent to stop taking work, finish what it has and exit.
func runDrain(e *env, args []string) int {
	fs := e.subFlags("drain", "drain AGENT")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		if err == nil {
			fs.Usage()
		}
		return exitUsage
	}
	c, err := e.client()
	if err != nil {
		return e.fail(err)
	}
	ctx, cancel := timeoutContext(0)
	defer cancel()
	if err := c.Drain(ctx, fs.Arg(0)); err != nil {
		return e.fail(err)
	}
	fmt.Fprintf(e.stdout, "agent %s is draining\n", fs.Arg(0))
	return exitOK
}

// Package procfs reads what identifies a process on Linux from /proc: its
// process group and start time, which together with the pid tell one process
// from a later one that got the same pid. It only reads; it never signals.
package procfs

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// Stat is what /proc/<pid>/stat says about a process's identity.
type Stat struct {
	PPid  int
	Pgrp  int
	Start uint64 // clock ticks after boot
	// Zombie is set for a process that is dead and waits to be reaped.
	Zombie bool
}

// ReadStat parses /proc/<pid>/stat.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, err
	}
	// The command name may hold spaces and parentheses: the fields after it
	// start past the last ')', with state first and starttime 20th.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("parse /proc/%d/stat: no command name", pid)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 20 {
		return Stat{}, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	ppid, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return Stat{}, fmt.Errorf("parse /proc/%d/stat ppid: %w", pid, err)
	}
	pgrp, err := strconv.Atoi(string(f[2]))
	if err != nil {
		return Stat{}, fmt.Errorf("parse /proc/%d/stat pgrp: %w", pid, err)
	}
	start, err := strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return Stat{}, fmt.Errorf("parse /proc/%d/stat starttime: %w", pid, err)
	}
	return Stat{PPid: ppid, Pgrp: pgrp, Start: start, Zombie: f[0][0] == 'Z' || f[0][0] == 'X'}, nil
}

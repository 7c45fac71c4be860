package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/snakepit-go/snakepit/internal/procfs"
)

// An agent keeps a record of every worker process it runs in its state dir
// (workers/<pid>.json: pid and start time), removed when the process is
// reaped. A record still there when the next agent starts on that state dir
// names a worker of a run that ended without cleaning up; that agent ends
// what is left of it before starting its own workers. A process is ended only
// when all of these hold, so a reused pid or another agent's process is never
// touched:
//
//   - it is in the recorded worker's process group (its leader's pid),
//   - it started no earlier than the recorded worker (the worker itself must
//     match the recorded start time exactly),
//   - its environment names this state dir (stateDirEnv, which workers and
//     what they start inherit).
//
// A process running under the recorded pid with another start time means the
// pid was reused, which the kernel allows only once the old process group is
// empty: such a record names nothing left.

// stateDirEnv names the agent's state dir in every worker's environment.
const stateDirEnv = "SNAKEPIT_AGENT_STATE_DIR"

// record is what the state dir keeps of one worker process.
type record struct {
	PID int `json:"pid"`
	// Start is the process start time in clock ticks after boot
	// (/proc/<pid>/stat field 22); with the pid it names one process.
	Start    uint64 `json:"start"`
	WorkerID string `json:"worker_id"`
}

// recordDir is where the records of a state dir live; empty without one.
func recordDir(stateDir string) string {
	if stateDir == "" {
		return ""
	}
	return filepath.Join(stateDir, "workers")
}

// writeRecord keeps a record of a started worker and returns its path.
func writeRecord(dir string, pid int, workerID string) (string, error) {
	st, err := readStat(pid)
	if err != nil {
		return "", fmt.Errorf("record worker %s: %w", workerID, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("record worker %s: %w", workerID, err)
	}
	b, _ := json.Marshal(record{PID: pid, Start: st.Start, WorkerID: workerID})
	path := filepath.Join(dir, strconv.Itoa(pid)+".json")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("record worker %s: %w", workerID, err)
	}
	return path, nil
}

// readStat reads a process's identity; see procfs.
func readStat(pid int) (procfs.Stat, error) { return procfs.ReadStat(pid) }

// endLeftovers ends what is left of the workers recorded in stateDir and
// removes their records. It returns the pids it killed.
func endLeftovers(stateDir string, log zerolog.Logger) []int {
	dir := recordDir(stateDir)
	if dir == "" {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	abs, _ := filepath.Abs(stateDir)
	var killed []int
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		var rec record
		if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &rec) == nil && rec.PID > 0 {
			killed = append(killed, endRecorded(rec, abs, log)...)
		}
		_ = os.Remove(path)
	}
	return killed
}

// endRecorded kills the live processes that belong to a recorded worker.
func endRecorded(rec record, stateDir string, log zerolog.Logger) []int {
	var killed []int
	for _, m := range groupMembers(rec, stateDir) {
		err := killExactly(m)
		if errors.Is(err, syscall.ESRCH) {
			continue
		}
		if err != nil {
			log.Warn().Err(err).Int(keyPID, m.pid).Msg("cannot end leftover process")
			continue
		}
		killed = append(killed, m.pid)
		log.Info().Int(keyPID, m.pid).Str(keyWorkerID, rec.WorkerID).
			Msg("ended leftover process of a previous run")
	}
	return killed
}

// member is a process found by its pid and start time.
type member struct {
	pid   int
	start uint64
}

// killExactly sends SIGKILL to m and to no other process: through a pidfd
// opened before the start time is checked again, so the pid cannot be reused in
// between. Without pidfds (Linux before 5.3) it falls back to kill(2) after
// the same check. A process already gone is ESRCH.
func killExactly(m member) error {
	fd, err := unix.PidfdOpen(m.pid, 0)
	if err != nil && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	if st, serr := readStat(m.pid); serr != nil || st.Start != m.start {
		if err == nil {
			unix.Close(fd)
		}
		return syscall.ESRCH
	}
	if err != nil {
		return syscall.Kill(m.pid, syscall.SIGKILL)
	}
	defer unix.Close(fd)
	return unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
}

// groupMembers lists the processes that pass every check of the package
// comment for rec.
func groupMembers(rec record, stateDir string) []member {
	if st, err := readStat(rec.PID); err == nil && st.Start != rec.Start {
		return nil
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var out []member
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil || pid == os.Getpid() {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.Zombie || st.Pgrp != rec.PID || st.Start < rec.Start {
			continue
		}
		if namesStateDir(pid, stateDir) {
			out = append(out, member{pid: pid, start: st.Start})
		}
	}
	return out
}

// namesStateDir reports whether pid's environment carries stateDirEnv set to
// exactly stateDir.
func namesStateDir(pid int, stateDir string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	want := []byte(stateDirEnv + "=" + stateDir)
	for _, kv := range bytes.Split(b, []byte{0}) {
		if bytes.Equal(kv, want) {
			return true
		}
	}
	return false
}

package agent

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// startSleeper starts a process group leader that sleeps, with stateDirEnv set
// to envDir, and a child of its own in its group. It returns the leader's pid
// and the child's.
func startSleeper(t *testing.T, envDir string) (leader, child int) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", "sleep 60 & echo $!; wait")
	cmd.Env = append(os.Environ(), stateDirEnv+"="+envDir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	var line [32]byte
	n, _ := out.Read(line[:])
	child, err = strconv.Atoi(string(line[:n-1]))
	if err != nil {
		t.Fatalf("child pid %q: %v", line[:n], err)
	}
	// The child's environment cannot be read while it execs: wait until it is
	// sleep, so that a scan sees it as the agent's.
	deadline := time.Now().Add(5 * time.Second)
	for {
		comm, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(child), "comm"))
		if string(comm) == "sleep\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d is %q, not sleep, after 5 s", child, comm)
		}
		time.Sleep(time.Millisecond)
	}
	return cmd.Process.Pid, child
}

func gone(pid int) bool {
	st, err := readStat(pid)
	return err != nil || st.Zombie
}

func TestEndLeftovers(t *testing.T) {
	cases := []struct {
		name     string
		envDir   func(stateDir string) string
		badStart bool
		ended    bool
	}{
		{"own leftover and its child", func(d string) string { return d }, false, true},
		{"reused pid: start time differs", func(d string) string { return d }, true, false},
		{"another agent's process", func(string) string { return "/elsewhere/state" }, false, false},
		{"state dir is only a prefix", func(d string) string { return d + "-2" }, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stateDir := t.TempDir()
			leader, child := startSleeper(t, tc.envDir(stateDir))
			st, err := readStat(leader)
			if err != nil {
				t.Fatal(err)
			}
			rec := record{PID: leader, Start: st.Start, WorkerID: "w"}
			if tc.badStart {
				rec.Start++
			}
			dir := recordDir(stateDir)
			_ = os.MkdirAll(dir, 0o755)
			b, _ := json.Marshal(rec)
			path := filepath.Join(dir, strconv.Itoa(leader)+".json")
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}

			killed := endLeftovers(stateDir, zerolog.Nop())
			if tc.ended != (len(killed) == 2) {
				t.Fatalf("endLeftovers killed %v, want leader %d and child %d ended: %v",
					killed, leader, child, tc.ended)
			}
			deadline := time.Now().Add(2 * time.Second)
			for tc.ended && !(gone(leader) && gone(child)) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if tc.ended != (gone(leader) && gone(child)) || (!tc.ended && (gone(leader) || gone(child))) {
				t.Fatalf("after endLeftovers: leader gone %v, child gone %v; want both %v",
					gone(leader), gone(child), tc.ended)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Fatalf("record %s still there after endLeftovers", path)
			}
		})
	}
}

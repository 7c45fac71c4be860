package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/snakepit-go/snakepit/config"
	"github.com/snakepit-go/snakepit/internal/procfs"
)

// parentOf reads a process's parent pid from /proc.
func parentOf(t *testing.T, pid int) int {
	t.Helper()
	st, err := procfs.ReadStat(pid)
	if err != nil {
		t.Fatalf("stat of pid %d: %v", pid, err)
	}
	return st.PPid
}

// TestWorkerStartModes: with worker_start fork the workers are
// children of one template process, not of the agent, and serve like any
// worker; with exec each is the agent's own child.
func TestWorkerStartModes(t *testing.T) {
	for _, mode := range []string{config.StartFork, config.StartExec} {
		t.Run(mode, func(t *testing.T) {
			p := testPool("default", 3)
			p.WorkerStart = mode
			f := startFleet(t, p)
			parents := map[int]bool{}
			for _, w := range f.host.Agent().Pools()[0].Workers() {
				parents[parentOf(t, int(w.Pid))] = true
			}
			agent := os.Getpid()
			switch mode {
			case config.StartFork:
				if len(parents) != 1 || parents[agent] {
					t.Fatalf("parents of the workers %v: want one template, not the agent %d",
						parents, agent)
				}
			default:
				if len(parents) != 1 || !parents[agent] {
					t.Fatalf("parents of the workers %v: want the agent %d", parents, agent)
				}
			}
			for i := range 6 {
				v, err := f.client.Execute(t.Context(), "default", "ping", nil)
				if err != nil {
					t.Fatalf("ping %d: %v", i, err)
				}
				pidOf(t, v)
			}
		})
	}
}

// TestTemplateDeathTakesItsWorkersAndRecovers: kill -9 of the template ends
// every worker it forked (none is left running), and the pool comes back with
// new workers from a new template.
func TestTemplateDeathTakesItsWorkersAndRecovers(t *testing.T) {
	p := testPool("default", 2)
	p.WorkerStart = config.StartFork
	f := startFleet(t, p)
	pool := f.host.Agent().Pools()[0]
	var workers []int
	for _, w := range pool.Workers() {
		workers = append(workers, int(w.Pid))
	}
	requireRunning(t, workers...)
	template := parentOf(t, workers[0])
	requireRunning(t, template)
	if err := syscall.Kill(template, syscall.SIGKILL); err != nil {
		t.Fatalf("kill template %d: %v", template, err)
	}
	eventually(t, 5*time.Second, "the template's workers gone", func() bool {
		return !alive(workers[0]) && !alive(workers[1]) && !alive(template)
	})
	eventually(t, 20*time.Second, "two fresh workers", func() bool {
		ws := pool.Workers()
		if pool.Stats().Available != 2 || len(ws) != 2 {
			return false
		}
		for _, w := range ws {
			if int(w.Pid) == workers[0] || int(w.Pid) == workers[1] || w.Pid == 0 {
				return false
			}
		}
		return true
	})
	fresh := pool.Workers()
	if p := parentOf(t, int(fresh[0].Pid)); p == template || p == os.Getpid() {
		t.Fatalf("fresh worker's parent is %d: want a new template (old %d, agent %d)",
			p, template, os.Getpid())
	}
	if _, err := f.client.Execute(t.Context(), "default", "ping", nil); err != nil {
		t.Fatalf("ping after the template died: %v", err)
	}
}

// TestNoTemplateFallsBackToExec: an interpreter that cannot run the template
// (here a wrapper script that refuses --template) still gets its workers, each
// started on its own, and the configured interpreter is used as it is.
func TestNoTemplateFallsBackToExec(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	wrapper := filepath.Join(t.TempDir(), "python-no-template")
	script := "#!/bin/sh\ncase \"$*\" in *--template*) echo refused >&2; exit 1;; esac\n" +
		"exec " + python + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	p := testPool("default", 2)
	p.Python = wrapper
	p.WorkerStart = config.StartFork
	f := startFleet(t, p)
	for _, w := range f.host.Agent().Pools()[0].Workers() {
		if parent := parentOf(t, int(w.Pid)); parent != os.Getpid() {
			t.Fatalf("worker %s has parent %d: want the agent %d (started on its own)",
				w.Id, parent, os.Getpid())
		}
	}
	if _, err := f.client.Execute(t.Context(), "default", "ping", nil); err != nil {
		t.Fatalf("ping: %v", err)
	}
}

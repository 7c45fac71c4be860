package agent

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
)

// Nothing a worker starts may outlive the agent. The worker itself gets SIGKILL
// when the agent dies (PR_SET_PDEATHSIG), but that flag is not inherited: the
// processes an adapter starts would be reparented and live on. So next to each
// worker runs a guard, a tiny shell in the worker's process group that waits
// for end of file on a pipe only the agent can write to. The kernel closes that
// pipe when the agent process ends, however it ends (kill -9 included), and the
// guard then kills its whole process group: the worker and everything it
// started that stayed in the group. While the agent lives the guard does
// nothing; it dies with the group when the agent ends the worker.

// guardScript reads stdin to end of file, then kills its own process group.
const guardScript = "read _; kill -9 0"

// guardShell runs guardScript.
const guardShell = "/bin/sh"

// agentLife is the pipe whose write end the agent holds for its whole life and
// never gives to a child. Guards read its other end.
var agentLife struct {
	once sync.Once
	r, w *os.File
	err  error
}

func lifeReader() (*os.File, error) {
	agentLife.once.Do(func() {
		agentLife.r, agentLife.w, agentLife.err = os.Pipe()
	})
	return agentLife.r, agentLife.err
}

// startGuard starts the guard of the worker with process id pid, in the
// worker's process group. It carries the worker's environment, so whatever
// finds a run's processes by their environment finds the guard too.
func startGuard(s *spec, pid int) (*exec.Cmd, error) {
	r, err := lifeReader()
	if err != nil {
		return nil, fmt.Errorf("start guard of worker %s: pipe: %w", s.workerID, err)
	}
	cmd := exec.Command(guardShell, "-c", guardScript, "snakepit-guard", s.workerID)
	cmd.Stdin = r
	cmd.Env = workerEnv(s)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pgid: pid}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start guard of worker %s: %w", s.workerID, err)
	}
	return cmd, nil
}

// reapGuard ends and reaps a guard whose group has been killed.
func reapGuard(cmd *exec.Cmd) {
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

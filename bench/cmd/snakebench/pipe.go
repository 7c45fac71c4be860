package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/snakepit-go/snakepit/schemas"
)

// pyChild is a Python process that speaks frames on a private pipe pair, fds 3
// (frames in) and 4 (frames out), as a worker does. One goroutine at a time may
// use it.
type pyChild struct {
	cmd   *exec.Cmd
	toW   *os.File
	fromW *os.File
	r     *bufio.Reader
	buf   []byte
}

// startPyChild starts python with args; env is added to the harness's own.
func startPyChild(python string, args, env []string) (*pyChild, error) {
	reqR, reqW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: request pipe: %w", python, err)
	}
	respR, respW, err := os.Pipe()
	if err != nil {
		closeFiles(reqR, reqW)
		return nil, fmt.Errorf("start %s: response pipe: %w", python, err)
	}
	cmd := exec.Command(python, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = []*os.File{reqR, respW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	closeFiles(reqR, respW)
	if err != nil {
		closeFiles(reqW, respR)
		return nil, fmt.Errorf("start %s: %w", python, err)
	}
	return &pyChild{
		cmd: cmd, toW: reqW, fromW: respR, r: bufio.NewReaderSize(respR, 64<<10),
	}, nil
}

func (c *pyChild) pid() int { return c.cmd.Process.Pid }

// roundTrip writes one frame and reads the answer, as a worker slot does.
func (c *pyChild) roundTrip(f *schemas.Frame) (*schemas.Frame, error) {
	buf, err := schemas.AppendFrame(c.buf[:0], f)
	if err != nil {
		return nil, fmt.Errorf("pipe round trip %d: %w", f.ID, err)
	}
	c.buf = buf
	if _, err := c.toW.Write(buf); err != nil {
		return nil, fmt.Errorf("pipe round trip %d: write: %w", f.ID, err)
	}
	answer, err := schemas.ReadFrame(c.r)
	if err != nil {
		return nil, fmt.Errorf("pipe round trip %d: read: %w", f.ID, err)
	}
	if answer.ID != f.ID || answer.Kind != schemas.KindResult {
		return nil, fmt.Errorf("pipe round trip %d: got kind %d id %d",
			f.ID, answer.Kind, answer.ID)
	}
	return answer, nil
}

// close ends the child by closing its input (it exits at end of file) and
// waits; past a second it is killed.
func (c *pyChild) close() {
	c.toW.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		_ = syscall.Kill(-c.pid(), syscall.SIGKILL)
		<-done
	}
	c.fromW.Close()
}

func closeFiles(files ...*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// workerHello is the part of a worker's HELLO meta the harness reports.
type workerHello struct {
	Python string `json:"python"`
}

// startRuntime starts the real worker runtime with the showcase adapter, as the
// agent does, and waits for its HELLO.
func startRuntime(python, runtimeDir, workerID string) (*pyChild, workerHello, error) {
	var h workerHello
	args := []string{"-u", "-m", "snakepit_worker",
		"--adapter", "snakepit_worker.examples.showcase:Showcase",
		"--worker-id", workerID, "--in-fd", "3", "--out-fd", "4", "--threads", "1"}
	env := []string{"PYTHONPATH=" + runtimeDir, "PYTHONUNBUFFERED=1"}
	c, err := startPyChild(python, args, env)
	if err != nil {
		return nil, h, err
	}
	f, err := schemas.ReadFrame(c.r)
	switch {
	case err != nil:
		err = fmt.Errorf("python start %s: read HELLO: %w", workerID, err)
	case f.Kind != schemas.KindHello:
		err = fmt.Errorf("python start %s: first frame is kind %d, want HELLO", workerID, f.Kind)
	default:
		err = json.Unmarshal(f.Meta, &h)
	}
	if err != nil {
		c.close()
		return nil, h, err
	}
	return c, h, nil
}

// timePythonStart returns the time from exec of the worker runtime to its HELLO.
func timePythonStart(python, runtimeDir string) (time.Duration, workerHello, error) {
	began := time.Now()
	c, h, err := startRuntime(python, runtimeDir, "bench-start")
	if err != nil {
		return 0, h, err
	}
	elapsed := time.Since(began)
	c.close()
	return elapsed, h, nil
}

// timeBatchStart starts n runtimes at once, as one start-up batch does, and
// returns the time until the last HELLO.
func timeBatchStart(python, runtimeDir string, n int) (time.Duration, error) {
	errs := make(chan error, n)
	children := make(chan *pyChild, n)
	began := time.Now()
	for i := range n {
		go func() {
			c, _, err := startRuntime(python, runtimeDir, fmt.Sprintf("bench-batch-%d", i))
			errs <- err
			children <- c
		}()
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	elapsed := time.Since(began)
	for range n {
		if c := <-children; c != nil {
			c.close()
		}
	}
	return elapsed, first
}

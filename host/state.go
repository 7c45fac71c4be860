package host

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// DefaultStateDir is $SNAKEPIT_STATE_DIR, else $XDG_STATE_HOME/snakepit, else
// ~/.local/state/snakepit.
func DefaultStateDir() string {
	if d := os.Getenv("SNAKEPIT_STATE_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "snakepit")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "snakepit-state")
	}
	return filepath.Join(home, ".local", "state", "snakepit")
}

// stateLock is an exclusive flock on <state>/lock, held while the agent runs. The
// kernel drops it when the process dies, however it dies.
type stateLock struct {
	f *os.File
}

func lockStateDir(dir string) (*stateLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("state dir lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("state dir %s is in use by another agent (pid %s); give this one its own --state-dir: %w",
				dir, strings.TrimSpace(string(holder)), ErrStateDirLocked)
		}
		return nil, fmt.Errorf("state dir lock %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return &stateLock{f: f}, nil
}

func (l *stateLock) release() {
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
}

var agentIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// agentID returns the explicit id, or the one kept in the state dir, or makes one
// from the host name and keeps it.
func agentID(dir, explicit string) (string, error) {
	if explicit != "" {
		if !agentIDRE.MatchString(explicit) {
			return "", fmt.Errorf("agent id %q: want 1 to 64 letters, digits, '_' or '-': %w", explicit, ErrBadAgentID)
		}
		return explicit, nil
	}
	path := filepath.Join(dir, "agent-id")
	if b, err := os.ReadFile(path); err == nil {
		if id := strings.TrimSpace(string(b)); agentIDRE.MatchString(id) {
			return id, nil
		}
	}
	host, _ := os.Hostname()
	host = regexp.MustCompile(`[^A-Za-z0-9_-]+`).ReplaceAllString(host, "-")
	if len(host) > 40 {
		host = host[:40]
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	id := strings.Trim(host, "-") + "-" + hex.EncodeToString(b[:])
	if err := os.WriteFile(path, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("keep agent id in %s: %w", path, err)
	}
	return id, nil
}

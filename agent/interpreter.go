package agent

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// resolveInterpreter asks python for its own executable once, so that workers
// start the interpreter itself: a launcher on PATH (a pyenv shim, a wrapper
// script) can cost more than the interpreter's own start, every start. When
// that fails the name is used as it is and the failure shows at the first
// worker start.
func resolveInterpreter(ctx context.Context, python string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, "-c", "import sys; sys.stdout.write(sys.executable)").Output()
	if err != nil {
		return python
	}
	path := strings.TrimSpace(string(out))
	if !filepath.IsAbs(path) {
		return python
	}
	if st, err := os.Stat(path); err != nil || st.IsDir() {
		return python
	}
	return path
}

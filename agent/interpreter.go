package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
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

// CompileRuntime writes the bytecode of the worker runtime under runtimeDir for
// python, once per interpreter: a marker file remembers that it was done. An
// interpreter never writes it itself when PYTHONDONTWRITEBYTECODE is set, as in
// many container images, and every worker would then compile the runtime from
// source at each start. Without bytecode workers still start, only slower, so a
// failure here is for the caller to log, not to stop on.
func CompileRuntime(ctx context.Context, python, runtimeDir string) error {
	sum := sha256.Sum256([]byte(python))
	marker := filepath.Join(runtimeDir, ".compiled-"+hex.EncodeToString(sum[:6]))
	if _, err := os.Stat(marker); err == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	// -f: without the marker nothing written before can be trusted, a
	// bytecode file with a current header but a damaged body included.
	out, err := exec.CommandContext(ctx, python, "-m", "compileall", "-q", "-f", runtimeDir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("compile worker runtime %s with %s: %w: %s",
			runtimeDir, python, err, strings.TrimSpace(string(out)))
	}
	if err := os.WriteFile(marker, []byte(python+"\n"), 0o644); err != nil {
		return fmt.Errorf("compile worker runtime: marker %s: %w", marker, err)
	}
	return nil
}

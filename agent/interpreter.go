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
	cmd := exec.CommandContext(ctx, python, "-m", "compileall", "-q", "-f", runtimeDir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("compile worker runtime %s with %s: %w: %s",
			runtimeDir, python, err, strings.TrimSpace(string(out)))
	}
	if err := os.WriteFile(marker, []byte(python+"\n"), 0o644); err != nil {
		return fmt.Errorf("compile worker runtime: marker %s: %w", marker, err)
	}
	return nil
}

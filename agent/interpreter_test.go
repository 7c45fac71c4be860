package agent

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestCompileRuntimeOnce: the runtime's bytecode is written even where the
// interpreter is told not to write bytecode, and a second call for the same
// interpreter does not run it again.
func TestCompileRuntimeOnce(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 on PATH")
	}
	t.Setenv("PYTHONDONTWRITEBYTECODE", "1")
	dir := t.TempDir()
	src := filepath.Join(dir, "mod.py")
	if err := os.WriteFile(src, []byte("X = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CompileRuntime(context.Background(), python, dir); err != nil {
		t.Fatalf("CompileRuntime: %v", err)
	}
	pycs, _ := filepath.Glob(filepath.Join(dir, "__pycache__", "mod.*.pyc"))
	if len(pycs) != 1 {
		t.Fatalf("bytecode files %v, want one for mod.py", pycs)
	}
	if err := os.RemoveAll(filepath.Join(dir, "__pycache__")); err != nil {
		t.Fatal(err)
	}
	if err := CompileRuntime(context.Background(), python, dir); err != nil {
		t.Fatalf("second CompileRuntime: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "__pycache__")); !os.IsNotExist(err) {
		t.Fatalf("second call compiled again (stat: %v); the marker should have stopped it", err)
	}
	if err := CompileRuntime(context.Background(), filepath.Join(dir, "no-python"), dir); err == nil {
		t.Fatal("CompileRuntime with a missing interpreter succeeded")
	}
}

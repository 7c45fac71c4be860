// Package python carries the worker runtime (snakepit_worker, standard library
// only) inside the Go binaries, so an agent needs nothing but a Python interpreter
// on its host. It only stores and extracts files; it must not start processes.
package python

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

//go:embed snakepit_worker/*.py snakepit_worker/py.typed snakepit_worker/examples/*.py
var runtimeFS embed.FS

// Extract writes the runtime under dir in a folder named by its content hash and
// returns the folder to put on PYTHONPATH. Extracting the same runtime twice reuses
// the folder.
func Extract(dir string) (string, error) {
	sum, err := digest()
	if err != nil {
		return "", err
	}
	dst := filepath.Join(dir, "runtime-"+sum[:12])
	if _, err := os.Stat(filepath.Join(dst, ".complete")); err == nil {
		return dst, nil
	}
	tmp, err := os.MkdirTemp(dir, ".runtime-")
	if err != nil {
		return "", fmt.Errorf("extract python runtime to %s: %w", dir, err)
	}
	defer os.RemoveAll(tmp)
	if err := copyTree(tmp); err != nil {
		return "", fmt.Errorf("extract python runtime to %s: %w", tmp, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		return "", fmt.Errorf("extract python runtime: %w", err)
	}
	os.RemoveAll(dst)
	if err := os.Rename(tmp, dst); err != nil {
		return "", fmt.Errorf("extract python runtime to %s: %w", dst, err)
	}
	return dst, nil
}

func copyTree(dst string) error {
	return fs.WalkDir(runtimeFS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dst, path)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := runtimeFS.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}

func digest() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(runtimeFS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := runtimeFS.ReadFile(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", path, len(data))
		h.Write(data)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash python runtime: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

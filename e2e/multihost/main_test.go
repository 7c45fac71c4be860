package multihost

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
)

// Images are tagged with a project name, so a later run reuses their layers.
const (
	natsImage  = "snakepit-test/nats:multihost"
	agentImage = "snakepit-test/agent:multihost"
)

// suite is what TestMain prepares once for every test.
var suite struct {
	skip      string // why the tests skip; empty when Docker is there
	docker    *testcontainers.DockerClient
	python    pythonMounts
	passwords map[string]string
	repoRoot  string
}

func TestMain(m *testing.M) {
	flag.Parse()
	// The reaper needs an image from a registry, which is not reachable.
	if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
		os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	if !testing.Verbose() {
		tclog.SetDefault(quietLog{})
	}
	code, err := setUp()
	if err != nil {
		if os.Getenv("SNAKEPIT_REQUIRE_DOCKER") == "1" {
			fmt.Fprintf(os.Stderr, "multihost: %v (SNAKEPIT_REQUIRE_DOCKER=1)\n", err)
			os.Exit(1)
		}
		suite.skip = err.Error()
	}
	if code != 0 {
		os.Exit(code)
	}
	code = m.Run()
	if suite.docker != nil {
		suite.docker.Close()
	}
	os.Exit(code)
}

type quietLog struct{}

func (quietLog) Printf(string, ...any) {}

// errNoDocker marks a set-up failure that skips the tests instead of failing.
var errNoDocker = errors.New("docker unavailable")

// setUp finds Docker and Python and builds both images. A missing Docker
// engine is returned as an error (skip); a broken build exits non-zero.
func setUp() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errNoDocker, err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	defer pcancel()
	if _, err := cli.Ping(pctx); err != nil {
		cli.Close()
		return 0, fmt.Errorf("%w: %w", errNoDocker, err)
	}
	suite.docker = cli
	if suite.python, err = findPython(); err != nil {
		return 0, err
	}
	if suite.repoRoot, err = filepath.Abs("../.."); err != nil {
		return 1, err
	}
	suite.passwords = map[string]string{}
	for _, u := range []string{"agent", "ops", "alice", "sys"} {
		suite.passwords[u] = randomHex()
	}
	began := time.Now()
	if err := buildImages(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "multihost: %v\n", err)
		return 1, nil
	}
	fmt.Fprintf(os.Stderr, "multihost: images built in %v\n",
		time.Since(began).Round(time.Millisecond))
	return 0, nil
}

func randomHex() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// requireDocker skips the test when TestMain found no Docker engine.
func requireDocker(t *testing.T) {
	t.Helper()
	if suite.skip != "" {
		t.Skipf("multihost: %s (set SNAKEPIT_REQUIRE_DOCKER=1 to fail instead)", suite.skip)
	}
}

// buildImages compiles static nats-server and pool-agent binaries and puts
// each alone in a FROM scratch image.
func buildImages(ctx context.Context) error {
	for _, img := range []struct {
		tag, pkg, binary, dockerfile string
	}{
		{natsImage, "github.com/nats-io/nats-server/v2", "nats-server",
			"FROM scratch\nCOPY nats-server /nats-server\nEXPOSE 4222 6222 8222\n" +
				"ENTRYPOINT [\"/nats-server\"]\n"},
		{agentImage, "./cmd/pool-agent", "pool-agent",
			"FROM scratch\nCOPY pool-agent /pool-agent\nENTRYPOINT [\"/pool-agent\"]\n"},
	} {
		dir, err := os.MkdirTemp("", "snakepit-image-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if err := goBuild(ctx, filepath.Join(dir, img.binary), img.pkg); err != nil {
			return err
		}
		df := filepath.Join(dir, "Dockerfile")
		if err := os.WriteFile(df, []byte(img.dockerfile), 0o644); err != nil {
			return err
		}
		if err := buildImage(ctx, dir, img.tag); err != nil {
			return err
		}
	}
	return nil
}

func goBuild(ctx context.Context, out, pkg string) error {
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		gobin = "go"
	}
	cmd := exec.CommandContext(ctx, gobin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = suite.repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// buildImage builds dir's Dockerfile as tag and removes the image the tag
// named before, if the build made a different one.
func buildImage(ctx context.Context, dir, tag string) error {
	old, _ := suite.docker.ImageInspect(ctx, tag)
	repo, version, _ := strings.Cut(tag, ":")
	req := &testcontainers.ContainerRequest{FromDockerfile: testcontainers.FromDockerfile{
		Context: dir, Repo: repo, Tag: version, KeepImage: true, BuildLogWriter: io.Discard,
	}}
	p, err := testcontainers.NewDockerProvider()
	if err != nil {
		return err
	}
	defer p.Close()
	if _, err := p.BuildImage(ctx, req); err != nil {
		return fmt.Errorf("build image %s: %w", tag, err)
	}
	now, err := suite.docker.ImageInspect(ctx, tag)
	if err != nil {
		return fmt.Errorf("inspect image %s: %w", tag, err)
	}
	if old.ID != "" && old.ID != now.ID {
		_, _ = suite.docker.ImageRemove(ctx, old.ID, image.RemoveOptions{PruneChildren: true})
	}
	return nil
}

// pythonMounts is the host's Python, and the shell the agent needs, as the
// agent containers see them: the same paths, read-only.
type pythonMounts struct {
	executable string
	binds      []string // host:container:ro
}

// findPython locates python3 with its standard library and the shared
// libraries (by ldd) of the interpreter and its extension modules.
func findPython() (pythonMounts, error) {
	var pm pythonMounts
	py, err := exec.LookPath("python3")
	if err != nil {
		return pm, fmt.Errorf("find python3: %w", err)
	}
	out, err := exec.Command(py, "-c",
		"import os,sys,sysconfig;print(os.path.realpath(sys.executable));print(sys.base_prefix);"+
			"print(os.path.join(sysconfig.get_path('platstdlib'),'lib-dynload'))").Output()
	if err != nil {
		return pm, fmt.Errorf("ask %s for its paths: %w", py, err)
	}
	lines := strings.Fields(string(out))
	if len(lines) != 3 {
		return pm, fmt.Errorf("ask %s for its paths: got %q", py, out)
	}
	pm.executable = lines[0]
	targets := map[string]string{} // container path -> host path
	addDir := func(dir string) {
		real, err := filepath.EvalSymlinks(dir)
		if err == nil {
			targets[dir], targets[real] = real, real
		}
	}
	addDir(lines[1])
	addDir(filepath.Dir(pm.executable))
	// The agent starts each worker's guard with /bin/sh (agent/hygiene.go).
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		return pm, fmt.Errorf("find /bin/sh: %w", err)
	}
	targets["/bin/sh"] = sh
	objects, _ := filepath.Glob(filepath.Join(lines[2], "*.so"))
	for _, obj := range append([]string{pm.executable, sh}, objects...) {
		if err := lddInto(obj, targets, addDir); err != nil {
			return pm, err
		}
	}
	pm.binds = bindsOf(targets)
	return pm, nil
}

// lddInto adds the directories of obj's libraries, and its loader's file.
func lddInto(obj string, targets map[string]string, addDir func(string)) error {
	out, err := exec.Command("ldd", obj).Output()
	if err != nil {
		return fmt.Errorf("ldd %s: %w", obj, err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			addDir(filepath.Dir(f[2]))
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			// The dynamic loader, at the path the binary names.
			if real, err := filepath.EvalSymlinks(f[0]); err == nil {
				targets[f[0]] = real
			}
		}
	}
	return nil
}

// bindsOf drops targets inside another target and formats the rest.
func bindsOf(targets map[string]string) []string {
	keys := make([]string, 0, len(targets))
	for k := range targets {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var binds []string
	var kept []string
	for _, k := range keys {
		covered := false
		for _, p := range kept {
			if strings.HasPrefix(k, p+"/") && strings.HasPrefix(targets[k], targets[p]+"/") {
				covered = true
			}
		}
		if !covered {
			kept = append(kept, k)
			binds = append(binds, targets[k]+":"+k+":ro")
		}
	}
	return binds
}

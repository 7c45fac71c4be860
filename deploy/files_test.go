package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"
)

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var docs []map[string]any
	d := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var doc map[string]any
		err := d.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, doc)
	}
}

func TestKubernetesManifests(t *testing.T) {
	files, _ := filepath.Glob("k8s/*.yaml")
	for _, f := range files {
		if filepath.Base(f) == "nats-values.yaml" {
			continue
		}
		for _, doc := range yamlDocs(t, f) {
			meta, _ := doc["metadata"].(map[string]any)
			if doc["apiVersion"] == nil || doc["kind"] == nil || meta["namespace"] != "snakepit" {
				t.Errorf("%s: apiVersion %v, kind %v, namespace %v; want all set, namespace snakepit",
					f, doc["apiVersion"], doc["kind"], meta["namespace"])
			}
		}
	}
	for _, f := range []string{"k8s/agent-deployment.yaml", "k8s/agent-daemonset.yaml"} {
		args := agentArgs(t, f)
		for _, want := range []string{"--kv-replicas=3", "--nats-user=agent"} {
			if !slices.Contains(args, want) {
				t.Errorf("%s: agent args %v lack %s", f, args, want)
			}
		}
	}
}

func agentArgs(t *testing.T, path string) []string {
	t.Helper()
	doc := yamlDocs(t, path)[0]
	var spec struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Args []string `yaml:"args"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	b, _ := yaml.Marshal(doc)
	if err := yaml.Unmarshal(b, &spec); err != nil || len(spec.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%s: want one container: %v", path, err)
	}
	return spec.Spec.Template.Spec.Containers[0].Args
}

func TestComposeFleet(t *testing.T) {
	doc := yamlDocs(t, "compose/docker-compose.yml")[0]
	services, _ := doc["services"].(map[string]any)
	var names []string
	for name := range services {
		names = append(names, name)
	}
	slices.Sort(names)
	want := []string{"agent-1", "agent-2", "node-1", "node-2", "node-3"}
	if !slices.Equal(names, want) {
		t.Fatalf("compose services %v, want %v", names, want)
	}
	for _, a := range []string{"agent-1", "agent-2"} {
		cmd, _ := services[a].(map[string]any)["command"].([]any)
		joined := strings.Join(anyStrings(cmd), " ")
		urls := "nats://node-1:4222,nats://node-2:4222,nats://node-3:4222"
		for _, w := range []string{urls, "--kv-replicas=3"} {
			if !strings.Contains(joined, w) {
				t.Errorf("%s command %q lacks %s", a, joined, w)
			}
		}
	}
}

func anyStrings(v []any) []string {
	var out []string
	for _, x := range v {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

func TestSystemdHardening(t *testing.T) {
	b, err := os.ReadFile("systemd/pool-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"NoNewPrivileges=yes", "ProtectSystem=strict", "StateDirectory=snakepit", "PrivateTmp=yes",
		"DynamicUser=yes", "CapabilityBoundingSet=\n", "--state-dir %S/snakepit",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("pool-agent.service lacks %q", want)
		}
	}
}

// permissions is a user's permissions as the Helm values write them.
type permissions struct {
	Publish   struct{ Allow []string } `yaml:"publish"`
	Subscribe struct{ Allow []string } `yaml:"subscribe"`
	Responses *struct {
		Max     int    `yaml:"max"`
		Expires string `yaml:"expires"`
	} `yaml:"allow_responses"`
}

// TestHelmValuesMatchAccounts: the Kubernetes cluster's users have the same
// rights as those of accounts.conf.
func TestHelmValuesMatchAccounts(t *testing.T) {
	setPasswords(t)
	opts, err := server.ProcessConfigFile("nats/node-1.conf")
	if err != nil {
		t.Fatal(err)
	}
	var values struct {
		Config struct {
			Merge struct {
				Accounts map[string]struct {
					Users []struct {
						User        string       `yaml:"user"`
						Permissions *permissions `yaml:"permissions"`
					} `yaml:"users"`
				} `yaml:"accounts"`
			} `yaml:"merge"`
		} `yaml:"config"`
	}
	b, _ := os.ReadFile("k8s/nats-values.yaml")
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	helm := map[string]*permissions{}
	for _, acct := range values.Config.Merge.Accounts {
		for _, u := range acct.Users {
			helm[u.User] = u.Permissions
		}
	}
	for _, u := range opts.Users {
		h, ok := helm[u.Username]
		if !ok {
			t.Errorf("user %s of accounts.conf is missing from nats-values.yaml", u.Username)
			continue
		}
		comparePermissions(t, u.Username, u.Permissions, h)
	}
	if len(helm) != len(opts.Users) {
		t.Errorf("nats-values.yaml has %d users, accounts.conf %d", len(helm), len(opts.Users))
	}
}

func comparePermissions(t *testing.T, user string, conf *server.Permissions, helm *permissions) {
	t.Helper()
	if (conf == nil) != (helm == nil) {
		t.Errorf("user %s: permissions in one file only", user)
		return
	}
	if conf == nil {
		return
	}
	if !slices.Equal(conf.Publish.Allow, helm.Publish.Allow) {
		t.Errorf("user %s publish: accounts.conf %v, nats-values.yaml %v",
			user, conf.Publish.Allow, helm.Publish.Allow)
	}
	if !slices.Equal(conf.Subscribe.Allow, helm.Subscribe.Allow) {
		t.Errorf("user %s subscribe: accounts.conf %v, nats-values.yaml %v",
			user, conf.Subscribe.Allow, helm.Subscribe.Allow)
	}
	if (conf.Response == nil) != (helm.Responses == nil) {
		t.Errorf("user %s: allow_responses in one file only", user)
		return
	}
	if conf.Response != nil {
		exp, _ := time.ParseDuration(helm.Responses.Expires)
		if conf.Response.MaxMsgs != helm.Responses.Max || conf.Response.Expires != exp {
			t.Errorf("user %s allow_responses: accounts.conf %+v, nats-values.yaml %+v",
				user, conf.Response, helm.Responses)
		}
	}
}

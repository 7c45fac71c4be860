// Package natsconn turns the NATS security settings of the command-line tools
// (user and password, token, NKey seed, credentials file, TLS, inbox prefix)
// into nats.go connection options, the same way for pool-agent and snakectl.
// It imports nats.go and the standard library only, and it never connects:
// callers pass Options() to nats.Connect. Go programs that build their own
// *nats.Conn for the client need none of this; they pass nats.go's options
// directly.
//
// A URL with credentials (nats://user:pass@host:4222 or nats://token@host)
// needs no flag at all: nats.go reads them from the URL.
package natsconn

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
)

// Flags are the security settings of one connection. A field left empty is
// read from its environment variable (the Env* constants) by Options, so a
// secret need not appear on a command line.
type Flags struct {
	// User and Password authenticate with a user name and password.
	User     string
	Password string
	// Token authenticates with a bearer token.
	Token string
	// NKeySeed is a file holding an NKey user seed (SU...).
	NKeySeed string
	// Creds is a credentials file: a user JWT and its NKey seed.
	Creds string
	// CA is a PEM file of certificate authorities that sign the server's
	// certificate. Default: the system's roots. Setting CA or Cert requires TLS.
	CA string
	// Cert and Key are the PEM client certificate and its private key, for
	// servers that verify clients (mutual TLS).
	Cert string
	Key  string
	// InboxPrefix replaces "_INBOX" in reply subjects, for accounts that let
	// each client subscribe to its own inbox subjects only.
	InboxPrefix string
}

// Environment variables read for fields left empty.
const (
	EnvUser        = "SNAKEPIT_NATS_USER"
	EnvPassword    = "SNAKEPIT_NATS_PASSWORD"
	EnvToken       = "SNAKEPIT_NATS_TOKEN"
	EnvNKeySeed    = "SNAKEPIT_NATS_NKEY"
	EnvCreds       = "SNAKEPIT_NATS_CREDS"
	EnvCA          = "SNAKEPIT_NATS_CA"
	EnvCert        = "SNAKEPIT_NATS_CERT"
	EnvKey         = "SNAKEPIT_NATS_KEY"
	EnvInboxPrefix = "SNAKEPIT_NATS_INBOX_PREFIX"
)

// setting ties a field to its flag and environment variable.
type setting struct {
	field *string
	flag  string
	env   string
	usage string
}

func (f *Flags) settings() []setting {
	return []setting{
		{&f.User, "nats-user", EnvUser, "NATS user name"},
		{&f.Password, "nats-password", EnvPassword, "NATS password (prefer the environment variable)"},
		{&f.Token, "nats-token", EnvToken, "NATS token (prefer the environment variable)"},
		{&f.NKeySeed, "nats-nkey", EnvNKeySeed, "file with the NATS NKey user seed"},
		{&f.Creds, "nats-creds", EnvCreds, "NATS credentials file (user JWT and seed)"},
		{&f.CA, "nats-ca", EnvCA, "PEM file of CAs for the NATS server's certificate"},
		{&f.Cert, "nats-cert", EnvCert, "PEM client certificate for NATS (mutual TLS)"},
		{&f.Key, "nats-key", EnvKey, "PEM private key of --nats-cert"},
		{&f.InboxPrefix, "inbox-prefix", EnvInboxPrefix, "prefix of reply subjects instead of _INBOX"},
	}
}

// Register defines the flags on fs. Their defaults are empty, so secrets from
// the environment never show in usage text; Options reads the environment.
func (f *Flags) Register(fs *flag.FlagSet) {
	for _, s := range f.settings() {
		fs.StringVar(s.field, s.flag, "", s.usage+" (env "+s.env+")")
	}
}

// Options checks the settings, reads the files they name and returns the
// connection options. Errors name the flag and the file.
func (f *Flags) Options() ([]nats.Option, error) {
	r := f.resolved()
	if err := r.check(); err != nil {
		return nil, err
	}
	var opts []nats.Option
	add := func(o nats.Option, err error) error {
		if err == nil && o != nil {
			opts = append(opts, o)
		}
		return err
	}
	for _, step := range []func() (nats.Option, error){
		r.userOption, r.tokenOption, r.nkeyOption, r.credsOption, r.tlsOption, r.inboxOption,
	} {
		if err := add(step()); err != nil {
			return nil, err
		}
	}
	return opts, nil
}

// resolved is a copy with empty fields taken from the environment.
func (f *Flags) resolved() *Flags {
	r := *f
	for _, s := range r.settings() {
		if *s.field == "" {
			*s.field = os.Getenv(s.env)
		}
	}
	return &r
}

// check refuses settings that contradict each other.
func (f *Flags) check() error {
	switch {
	case f.User != "" && f.Password == "":
		return fmt.Errorf("%w: --nats-user %q without --nats-password", ErrBadSetting, f.User)
	case f.Password != "" && f.User == "":
		return fmt.Errorf("%w: --nats-password without --nats-user", ErrBadSetting)
	case f.Token != "" && f.User != "":
		return fmt.Errorf("%w: --nats-token and --nats-user both set", ErrBadSetting)
	case f.NKeySeed != "" && f.Creds != "":
		return fmt.Errorf("%w: --nats-nkey and --nats-creds both set", ErrBadSetting)
	case (f.Cert == "") != (f.Key == ""):
		return fmt.Errorf("%w: --nats-cert and --nats-key go together", ErrBadSetting)
	}
	return nil
}

func (f *Flags) userOption() (nats.Option, error) {
	if f.User == "" {
		return nil, nil
	}
	return nats.UserInfo(f.User, f.Password), nil
}

func (f *Flags) tokenOption() (nats.Option, error) {
	if f.Token == "" {
		return nil, nil
	}
	return nats.Token(f.Token), nil
}

func (f *Flags) nkeyOption() (nats.Option, error) {
	if f.NKeySeed == "" {
		return nil, nil
	}
	o, err := nats.NkeyOptionFromSeed(f.NKeySeed)
	if err != nil {
		return nil, fmt.Errorf("--nats-nkey %s: %w: %w", f.NKeySeed, ErrBadFile, err)
	}
	return o, nil
}

// credsOption checks the file now; nats.go reads it again on every connect,
// so a rotated file is picked up on reconnect.
func (f *Flags) credsOption() (nats.Option, error) {
	if f.Creds == "" {
		return nil, nil
	}
	b, err := os.ReadFile(f.Creds)
	if err != nil {
		return nil, fmt.Errorf("--nats-creds %s: %w: %w", f.Creds, ErrBadFile, err)
	}
	if !strings.Contains(string(b), "BEGIN NATS USER JWT") {
		return nil, fmt.Errorf("--nats-creds %s: %w: no user JWT in the file", f.Creds, ErrBadFile)
	}
	return nats.UserCredentials(f.Creds), nil
}

func (f *Flags) tlsOption() (nats.Option, error) {
	if f.CA == "" && f.Cert == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.CA != "" {
		pool, err := loadCA(f.CA)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if f.Cert != "" {
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("--nats-cert %s, --nats-key %s: %w: %w", f.Cert, f.Key, ErrBadFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return nats.Secure(cfg), nil
}

func loadCA(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--nats-ca %s: %w: %w", file, ErrBadFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("--nats-ca %s: %w: no PEM certificate in the file", file, ErrBadFile)
	}
	return pool, nil
}

// inboxOption refuses what nats.go would refuse only at connect time.
func (f *Flags) inboxOption() (nats.Option, error) {
	p := f.InboxPrefix
	if p == "" {
		return nil, nil
	}
	if strings.ContainsAny(p, "*> \t") || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") ||
		strings.Contains(p, "..") {
		return nil, fmt.Errorf("%w: --inbox-prefix %q: must be subject tokens without wildcards", ErrBadSetting, p)
	}
	return nats.CustomInboxPrefix(p), nil
}

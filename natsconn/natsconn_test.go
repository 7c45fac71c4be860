package natsconn

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// startServer runs an embedded server on a free loopback port, changed by
// configure, and returns its client URL.
func startServer(t *testing.T, configure func(*server.Options)) string {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true}
	configure(opts)
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("server.NewServer: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("embedded server not ready within 5s")
	}
	t.Cleanup(s.Shutdown)
	return s.ClientURL()
}

// connect connects with the options of f and reports the error, if any.
func connect(t *testing.T, url string, f Flags) error {
	t.Helper()
	opts, err := f.Options()
	if err != nil {
		t.Fatalf("Options() = %v", err)
	}
	opts = append(opts, nats.Timeout(2*time.Second), nats.NoReconnect())
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return err
	}
	defer nc.Close()
	return nc.Flush()
}

type connectCase struct {
	name   string
	url    string
	flags  Flags
	wantOK bool
}

func runConnectCases(t *testing.T, cases []connectCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := connect(t, tc.url, tc.flags)
			if tc.wantOK && err != nil {
				t.Fatalf("connect(%s) = %v, want success", tc.name, err)
			}
			if !tc.wantOK && err == nil {
				t.Fatalf("connect(%s) succeeded, want an error", tc.name)
			}
			if err != nil {
				t.Logf("connect(%s): %v", tc.name, err)
			}
		})
	}
}

func TestUserPassword(t *testing.T) {
	url := startServer(t, func(o *server.Options) { o.Username, o.Password = "alice", "s3cret" })
	withCreds := strings.Replace(url, "nats://", "nats://alice:s3cret@", 1)
	runConnectCases(t, []connectCase{
		{"right password", url, Flags{User: "alice", Password: "s3cret"}, true},
		{"wrong password", url, Flags{User: "alice", Password: "nope"}, false},
		{"no credentials", url, Flags{}, false},
		{"credentials in the URL", withCreds, Flags{}, true},
	})
}

func TestToken(t *testing.T) {
	url := startServer(t, func(o *server.Options) { o.Authorization = "t0ken" })
	withToken := strings.Replace(url, "nats://", "nats://t0ken@", 1)
	runConnectCases(t, []connectCase{
		{"right token", url, Flags{Token: "t0ken"}, true},
		{"wrong token", url, Flags{Token: "other"}, false},
		{"token in the URL", withToken, Flags{}, true},
	})
}

func TestNKey(t *testing.T) {
	dir := t.TempDir()
	good, goodPub := nkeySeed(t, dir, "good.nk")
	bad, _ := nkeySeed(t, dir, "bad.nk")
	url := startServer(t, func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: goodPub}} })
	runConnectCases(t, []connectCase{
		{"known key", url, Flags{NKeySeed: good}, true},
		{"unknown key", url, Flags{NKeySeed: bad}, false},
	})
}

func TestCredentialsFile(t *testing.T) {
	dir := t.TempDir()
	op, opJWT := operator(t)
	acctJWT, acctKP := account(t, op)
	url := startServer(t, func(o *server.Options) {
		o.TrustedOperators = []*jwt.OperatorClaims{opJWT}
		pub, _ := acctKP.PublicKey()
		r := &server.MemAccResolver{}
		if err := r.Store(pub, acctJWT); err != nil {
			t.Fatalf("store account: %v", err)
		}
		o.AccountResolver = r
	})
	good := credsFile(t, dir, "good.creds", acctKP)
	_, stranger := account(t, op)
	bad := credsFile(t, dir, "bad.creds", stranger)
	runConnectCases(t, []connectCase{
		{"user of a known account", url, Flags{Creds: good}, true},
		{"user of an unknown account", url, Flags{Creds: bad}, false},
		{"no credentials", url, Flags{}, false},
	})
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "test CA")
	other := newCA(t, "other CA")
	caFile := writeFile(t, dir, "ca.pem", ca.certPEM)
	otherFile := writeFile(t, dir, "other.pem", other.certPEM)
	srvCert := ca.issue(t, "server", true)
	cliCert, cliKey := ca.issueFiles(t, dir, "client", false)
	strangerCert, strangerKey := other.issueFiles(t, dir, "stranger", false)

	plain := startServer(t, func(o *server.Options) {
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{srvCert}, MinVersion: tls.VersionTLS12}
		o.TLS = true
	})
	mutual := startServer(t, func(o *server.Options) {
		o.TLSConfig = &tls.Config{
			Certificates: []tls.Certificate{srvCert}, MinVersion: tls.VersionTLS12,
			ClientCAs: ca.pool(), ClientAuth: tls.RequireAndVerifyClientCert,
		}
		o.TLS, o.TLSVerify = true, true
	})
	runConnectCases(t, []connectCase{
		{"server TLS, right CA", plain, Flags{CA: caFile}, true},
		{"server TLS, wrong CA", plain, Flags{CA: otherFile}, false},
		{"server TLS, no CA", plain, Flags{}, false},
		{"mutual TLS with a client certificate", mutual,
			Flags{CA: caFile, Cert: cliCert, Key: cliKey}, true},
		{"mutual TLS without a client certificate", mutual, Flags{CA: caFile}, false},
		{"mutual TLS with a stranger's certificate", mutual,
			Flags{CA: caFile, Cert: strangerCert, Key: strangerKey}, false},
	})
}

func TestInboxPrefix(t *testing.T) {
	url := startServer(t, func(*server.Options) {})
	opts, err := (&Flags{InboxPrefix: "_INBOX_alice"}).Options()
	if err != nil {
		t.Fatalf("Options() = %v", err)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer nc.Close()
	if in := nc.NewInbox(); !strings.HasPrefix(in, "_INBOX_alice.") {
		t.Fatalf("NewInbox() = %q, want prefix _INBOX_alice.", in)
	}
}

func TestOptionsErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.pem")
	junk := writeFile(t, t.TempDir(), "junk.txt", []byte("not a key\n"))
	cases := []struct {
		name  string
		flags Flags
		want  error
		names []string // what the message must mention
	}{
		{"user without password", Flags{User: "a"}, ErrBadSetting,
			[]string{"--nats-user", "--nats-password"}},
		{"password without user", Flags{Password: "p"}, ErrBadSetting, []string{"--nats-password"}},
		{"token and user", Flags{User: "a", Password: "p", Token: "t"}, ErrBadSetting,
			[]string{"--nats-token"}},
		{"nkey and creds", Flags{NKeySeed: junk, Creds: junk}, ErrBadSetting,
			[]string{"--nats-nkey", "--nats-creds"}},
		{"cert without key", Flags{Cert: junk}, ErrBadSetting, []string{"--nats-cert", "--nats-key"}},
		{"missing CA", Flags{CA: missing}, ErrBadFile, []string{"--nats-ca", missing}},
		{"CA without PEM", Flags{CA: junk}, ErrBadFile, []string{"--nats-ca", junk}},
		{"missing seed", Flags{NKeySeed: missing}, ErrBadFile, []string{"--nats-nkey", missing}},
		{"bad seed", Flags{NKeySeed: junk}, ErrBadFile, []string{"--nats-nkey", junk}},
		{"missing creds", Flags{Creds: missing}, ErrBadFile, []string{"--nats-creds", missing}},
		{"creds without JWT", Flags{Creds: junk}, ErrBadFile, []string{"--nats-creds", junk}},
		{"missing cert", Flags{Cert: missing, Key: missing}, ErrBadFile,
			[]string{"--nats-cert", missing}},
		{"inbox wildcard", Flags{InboxPrefix: "_INBOX.>"}, ErrBadSetting, []string{"--inbox-prefix"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.flags.Options()
			if !errors.Is(err, tc.want) {
				t.Fatalf("Options(%s) = %v, want %v", tc.name, err, tc.want)
			}
			for _, n := range tc.names {
				if !strings.Contains(err.Error(), n) {
					t.Errorf("Options(%s) = %q, want it to name %q", tc.name, err, n)
				}
			}
		})
	}
}

func TestRegisterAndEnvironment(t *testing.T) {
	t.Setenv(EnvPassword, "from-env")
	t.Setenv(EnvToken, "")
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	var f Flags
	f.Register(fs)
	if err := fs.Parse([]string{"--nats-user", "bob", "--inbox-prefix", "_INBOX_bob"}); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	r := f.resolved()
	if r.User != "bob" || r.Password != "from-env" || r.InboxPrefix != "_INBOX_bob" {
		t.Fatalf("resolved() = %+v, want user bob, password from the environment", r)
	}
	var usage bytes.Buffer
	fs.SetOutput(&usage)
	fs.PrintDefaults()
	if strings.Contains(usage.String(), "from-env") {
		t.Fatalf("usage shows a secret from the environment:\n%s", usage.String())
	}
	if !strings.Contains(usage.String(), EnvPassword) {
		t.Fatalf("usage does not name %s:\n%s", EnvPassword, usage.String())
	}
}

// Fixtures, made at run time: nothing secret is committed.

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func nkeySeed(t *testing.T, dir, name string) (file, public string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	public, _ = kp.PublicKey()
	return writeFile(t, dir, name, seed), public
}

func operator(t *testing.T) (nkeys.KeyPair, *jwt.OperatorClaims) {
	t.Helper()
	kp, err := nkeys.CreateOperator()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return kp, jwt.NewOperatorClaims(pub)
}

func account(t *testing.T, op nkeys.KeyPair) (string, nkeys.KeyPair) {
	t.Helper()
	kp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	token, err := jwt.NewAccountClaims(pub).Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	return token, kp
}

func credsFile(t *testing.T, dir, name string, acct nkeys.KeyPair) string {
	t.Helper()
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	token, err := jwt.NewUserClaims(pub).Encode(acct)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	b, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, name, b)
}

// authority is a throwaway certificate authority.
type authority struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

func newCA(t *testing.T, name string) *authority {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &authority{cert: cert, key: key, certPEM: pemBlock("CERTIFICATE", der)}
}

func (a *authority) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(a.cert)
	return p
}

// issue signs a leaf certificate; a server's is valid for 127.0.0.1.
func (a *authority) issue(t *testing.T, name string, isServer bool) tls.Certificate {
	t.Helper()
	certPEM, keyPEM := a.issuePEM(t, name, isServer)
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (a *authority) issueFiles(t *testing.T, dir, name string, isServer bool) (cert, key string) {
	t.Helper()
	certPEM, keyPEM := a.issuePEM(t, name, isServer)
	return writeFile(t, dir, name+".pem", certPEM), writeFile(t, dir, name+"-key.pem", keyPEM)
}

func (a *authority) issuePEM(t *testing.T, name string, isServer bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key := newKey(t)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if isServer {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("CERTIFICATE", der), pemBlock("EC PRIVATE KEY", kb)
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

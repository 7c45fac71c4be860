package jetstream

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

func testConn(t *testing.T) *nats.Conn {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(),
		NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close(); ns.Shutdown(); ns.WaitForShutdown() })
	return nc
}

func TestOpenIsIdempotentAndReportsMismatch(t *testing.T) {
	nc := testConn(t)
	ctx := t.Context()
	cfg := SessionsConfig(1)
	if _, err := Open(ctx, nc, cfg); err != nil {
		t.Fatalf("Open() = %v", err)
	}
	if _, err := Open(ctx, nc, cfg); err != nil {
		t.Fatalf("Open() again = %v, want the same bucket", err)
	}
	other := cfg
	other.MarkerTTL = 5 * time.Minute
	if _, err := Open(ctx, nc, other); !errors.Is(err, ErrBucketMismatch) {
		t.Fatalf("Open(other settings) = %v, want ErrBucketMismatch", err)
	}
	if _, err := Lookup(ctx, nc, "no-such-bucket"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Lookup(missing) = %v, want ErrNotFound", err)
	}
}

func TestKeyTTLAndCompareAndSwap(t *testing.T) {
	nc := testConn(t)
	ctx := t.Context()
	kv, err := Open(ctx, nc, SessionsConfig(1))
	if err != nil {
		t.Fatal(err)
	}
	rev, err := kv.Create(ctx, "k", []byte("v1"), time.Second)
	if err != nil {
		t.Fatalf("Create = %v", err)
	}
	if _, err := kv.Create(ctx, "k", []byte("v2"), time.Second); !errors.Is(err, ErrKeyExists) {
		t.Fatalf("second Create = %v, want ErrKeyExists", err)
	}
	_, err = kv.Update(ctx, "k", []byte("v2"), rev+100, time.Second)
	if !errors.Is(err, ErrRevisionMismatch) {
		t.Fatalf("Update at a wrong revision = %v, want ErrRevisionMismatch", err)
	}
	// Renewals keep the key alive past its first TTL; then it expires and the
	// watch says so.
	expired := make(chan Entry, 4)
	stop, err := kv.Watch(ctx, func(e Entry) {
		if e.Deleted {
			expired <- e
		}
	}, func() {})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	for i := 0; i < 3; i++ {
		time.Sleep(500 * time.Millisecond) // renew twice within each TTL
		if rev, err = kv.Update(ctx, "k", []byte("v"), rev, time.Second); err != nil {
			t.Fatalf("renew %d = %v", i, err)
		}
	}
	if _, err := kv.Get(ctx, "k"); err != nil {
		t.Fatalf("Get after renewals = %v, want the key alive", err)
	}
	select {
	case e := <-expired:
		if e.Key != "k" || e.Reason != "expired" {
			t.Fatalf("watch saw %+v, want k expired", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("key did not expire")
	}
	if _, err := kv.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after expiry = %v, want ErrNotFound", err)
	}
}

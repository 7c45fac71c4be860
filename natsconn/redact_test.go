package natsconn

import "testing"

func TestRedact(t *testing.T) {
	cases := map[string]string{
		"nats://127.0.0.1:4222":                 "nats://127.0.0.1:4222",
		"nats://agent:secret@127.0.0.1:4222":    "nats://***@127.0.0.1:4222",
		"nats://TOKEN@127.0.0.1:4222":           "nats://***@127.0.0.1:4222",
		"nats://a:b@h1:4222,nats://c:d@h2:4222": "nats://***@h1:4222,nats://***@h2:4222",
	}
	for in, want := range cases {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

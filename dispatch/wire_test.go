package dispatch

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/snakepit-go/snakepit/schemas"
)

func msg(subject, body string, headers ...string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = []byte(body)
	for i := 0; i+1 < len(headers); i += 2 {
		m.Header.Set(headers[i], headers[i+1])
	}
	return m
}

func TestDecodeRequest(t *testing.T) {
	now := time.Unix(1000, 0)
	cases := []struct {
		name   string
		m      *nats.Msg
		reason string // "" for success
		check  func(*schemas.Request) bool
	}{
		{"empty body is no arguments", msg("snakepit.p.exec.ping", ""), "",
			func(r *schemas.Request) bool {
				return string(r.Args) == "{}" && r.Command == "ping" && r.RequestID != ""
			}},
		{"object kept as sent", msg("snakepit.p.exec.echo", ` {"n": 9007199254740993} `), "",
			func(r *schemas.Request) bool { return string(r.Args) == `{"n": 9007199254740993}` }},
		{"array refused", msg("snakepit.p.exec.echo", `[1]`), schemas.ReasonBadArguments, nil},
		{"broken JSON refused", msg("snakepit.p.exec.echo", `{"a":`), schemas.ReasonBadArguments, nil},
		{"not UTF-8 refused", msg("snakepit.p.exec.echo", "{\"a\":\"\xff\"}"),
			schemas.ReasonBadArguments, nil},
		{"raw bytes pass",
			msg("snakepit.p.exec.echo", "\xff\x00", HeaderContentType, ContentTypeOctetStream), "",
			func(r *schemas.Request) bool { return r.Raw && string(r.Args) == "\xff\x00" }},
		{"timeout sets the deadline", msg("snakepit.p.exec.ping", "", HeaderTimeout, "250"), "",
			func(r *schemas.Request) bool { return r.Deadline.Equal(now.Add(250 * time.Millisecond)) }},
		{"bad timeout", msg("snakepit.p.exec.ping", "", HeaderTimeout, "-1"),
			schemas.ReasonInvalidRequest, nil},
		{"bad queue timeout", msg("snakepit.p.exec.ping", "", HeaderQueueTimeout, "x"),
			schemas.ReasonInvalidRequest, nil},
		{"session kept", msg("snakepit.p.exec.ping", "", HeaderSession, "user 42@example.com"), "",
			func(r *schemas.Request) bool { return r.SessionID == "user 42@example.com" }},
		{"session too long", msg("snakepit.p.exec.ping", "", HeaderSession, strings.Repeat("x", 257)),
			schemas.ReasonInvalidRequest, nil},
		{"request id echoed", msg("snakepit.p.exec.ping", "", HeaderRequestID, "r-1"), "",
			func(r *schemas.Request) bool { return r.RequestID == "r-1" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := decodeRequest(tc.m, now)
			if tc.reason != "" {
				var e *schemas.Error
				if !errors.As(err, &e) || e.Reason != tc.reason || e.Category != schemas.CategoryValidation {
					t.Fatalf("decodeRequest = %v, want validation/%s", err, tc.reason)
				}
				return
			}
			if err != nil || !tc.check(req) {
				t.Fatalf("decodeRequest = %+v, %v", req, err)
			}
		})
	}
}

func TestDecodeStreamOptions(t *testing.T) {
	cases := []struct {
		name    string
		headers []string
		want    streamOptions
		bad     bool
	}{
		{"defaults", nil, streamOptions{window: DefaultWindow, idle: DefaultStreamIdle}, false},
		{"no flow control", []string{HeaderWindow, "0"},
			streamOptions{window: 0, idle: DefaultStreamIdle}, false},
		{"all set", []string{HeaderWindow, "8", HeaderKeepalive, "100", HeaderIdleTimeout, "900"},
			streamOptions{window: 8, keepalive: 100 * time.Millisecond,
				idle: 900 * time.Millisecond}, false},
		{"window too big", []string{HeaderWindow, "99999"}, streamOptions{}, true},
		{"idle zero", []string{HeaderIdleTimeout, "0"}, streamOptions{}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeStreamOptions(msg("s", "", tc.headers...).Header)
			if tc.bad != (err != nil) || (!tc.bad && got != tc.want) {
				t.Fatalf("decodeStreamOptions = %+v, %v; want %+v (error %v)", got, err, tc.want, tc.bad)
			}
		})
	}
}

func TestErrorReply(t *testing.T) {
	e := schemas.NewError(
		schemas.CategoryWorker, schemas.ReasonPythonException, "line one\r\nline two",
	).WithDetail("worker_id", "w-1")
	m := errorMsg("inbox", "r-1", e)
	want := map[string]string{
		HeaderError: "worker", HeaderServiceErrorCode: "500", HeaderServiceError: "line one  line two",
		HeaderRequestID: "r-1", HeaderWorker: "w-1",
	}
	for k, v := range want {
		if got := m.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	back, err := replyOf(m)
	var got *Error
	if back != nil || !errors.As(err, &got) || got.Message != e.Message || got.Reason != e.Reason {
		t.Fatalf("replyOf(error reply) = %v, %v; want the same error back", back, err)
	}
	codes := map[*schemas.Error]string{
		{Category: "validation"}:                              "400",
		{Category: "timeout"}:                                 "504",
		{Category: "pool"}:                                    "503",
		{Category: "pool", Reason: "pool_not_found"}:          "404",
		{Category: "validation", Reason: "payload_too_large"}: "413",
	}
	for e, code := range codes {
		if got := errorCode(e); got != code {
			t.Errorf("errorCode(%+v) = %s, want %s", e, got, code)
		}
	}
}

func TestPeerCapacityPick(t *testing.T) {
	now := time.Unix(1000, 0)
	pc := newPeerCapacity()
	if got := pc.pick(false, now); got != "" || !pc.empty() {
		t.Fatalf("pick with no peers = %q, want none", got)
	}
	pc.update(&schemas.Capacity{AgentId: "a", Free: 1, Room: 5}, now)
	pc.update(&schemas.Capacity{AgentId: "b", Free: 3}, now)
	picks := map[string]int{}
	for i := 0; i < 4; i++ {
		picks[pc.pick(false, now)]++
	}
	if picks["b"] != 3 || picks["a"] != 1 {
		t.Fatalf("picks = %v, want b three times and a once (by idle workers)", picks)
	}
	if got := pc.pick(false, now); got != "" {
		t.Fatalf("pick with every idle worker taken = %q, want none", got)
	}
	if got := pc.pick(true, now); got != "a" {
		t.Fatalf("pick for queue room = %q, want a", got)
	}
	if got := pc.pick(false, now.Add(capacityStale+time.Second)); got != "" || !pc.empty() {
		t.Fatalf("pick after the figures went stale = %q, want none and no peers", got)
	}
	pc.update(&schemas.Capacity{AgentId: "c", Free: 2}, now)
	pc.update(&schemas.Capacity{AgentId: "c", Draining: true}, now)
	if !pc.empty() {
		t.Fatal("a draining peer is still routed to")
	}
}

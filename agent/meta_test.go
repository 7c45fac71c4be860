package agent

import (
	"encoding/json"
	"reflect"
	"testing"
)

// appendMeta must say what encoding/json would: the worker decodes it.
func TestAppendMetaMatchesEncodingJSON(t *testing.T) {
	cases := []requestMeta{
		{Command: "ping", RequestID: "r-1"},
		{Command: "echo", RequestID: "x", SessionID: "user 42@example.com", Epoch: 1733300000000,
			DeadlineMs: 1733300005000, Traceparent: "00-abc-def-01"},
		{Command: "visit", RequestID: "g", SessionID: "s", Epoch: 5, Guest: true, Pipelined: true},
		{Command: "gen", RequestID: "q\"uote\\back", SessionID: "tab\there\nnew 🐍 \x01", Stream: true, Window: 32},
		{Command: "c", RequestID: "bad \xff utf8"},
	}
	for _, m := range cases {
		var got, want map[string]any
		if err := json.Unmarshal(appendMeta(nil, &m), &got); err != nil {
			t.Fatalf("appendMeta(%+v) is not JSON: %v: %s", m, err, appendMeta(nil, &m))
		}
		std, _ := json.Marshal(&m)
		_ = json.Unmarshal(std, &want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("appendMeta(%+v) = %v, want %v", m, got, want)
		}
	}
}

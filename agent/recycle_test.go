package agent

import (
	"testing"
	"time"
)

func TestRecyclePolicy(t *testing.T) {
	cases := []struct {
		name               string
		policy             recyclePolicy
		started, capacity  int
		exhausted, prepare bool
	}{
		{"infinity", recyclePolicy{}, 1 << 20, 1, false, false},
		{"fresh", recyclePolicy{maxRequests: 5}, 0, 1, false, false},
		{"one left: prepare", recyclePolicy{maxRequests: 5}, 4, 1, false, true},
		{"reached", recyclePolicy{maxRequests: 5}, 5, 1, true, true},
		{"threads prepare a round ahead", recyclePolicy{maxRequests: 10}, 6, 4, false, true},
		{"max one prepares at once", recyclePolicy{maxRequests: 1}, 0, 1, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.policy.exhausted(tc.started); got != tc.exhausted {
				t.Errorf("exhausted(%d) = %v, want %v", tc.started, got, tc.exhausted)
			}
			if got := tc.policy.prepare(tc.started, tc.capacity); got != tc.prepare {
				t.Errorf("prepare(%d, %d) = %v, want %v", tc.started, tc.capacity, got, tc.prepare)
			}
		})
	}
}

func TestRecycleExpiry(t *testing.T) {
	began := time.Unix(1000, 0)
	if at := (recyclePolicy{}).expiry(began); !at.IsZero() {
		t.Fatalf("expiry without ttl = %v, want never", at)
	}
	if at := (recyclePolicy{ttl: time.Hour}).expiry(began); !at.Equal(began.Add(time.Hour)) {
		t.Fatalf("expiry with 1h ttl = %v, want %v", at, began.Add(time.Hour))
	}
}

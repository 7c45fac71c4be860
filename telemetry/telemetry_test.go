package telemetry

import (
	"reflect"
	"sync"
	"testing"
)

func TestAttachEmitDetach(t *testing.T) {
	cases := []struct {
		name     string
		attachTo []string
		emit     []string
		detach   bool
		want     []string
	}{
		{"matching name", []string{"a.b"}, []string{"a.b"}, false, []string{"a.b"}},
		{"other name ignored", []string{"a.b"}, []string{"a.c"}, false, nil},
		{"several names", []string{"a.b", "a.c"}, []string{"a.c", "a.b", "x"}, false,
			[]string{"a.c", "a.b"}},
		{"detached gets nothing", []string{"a.b"}, []string{"a.b"}, true, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			detach := Attach(func(e Event) { got = append(got, e.Name) }, tc.attachTo...)
			defer detach()
			if tc.detach {
				detach()
			}
			for _, n := range tc.emit {
				Emit(n, nil, nil)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("events = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestEmitCarriesMeasurementsAndMetadataInAttachOrder(t *testing.T) {
	var order []int
	var last Event
	d1 := Attach(func(e Event) { order = append(order, 1); last = e }, "ev")
	defer d1()
	d2 := Attach(func(e Event) { order = append(order, 2) }, "ev")
	defer d2()
	Emit("ev", map[string]float64{"count": 3}, map[string]any{"run_id": "r1"})
	if !reflect.DeepEqual(order, []int{1, 2}) {
		t.Fatalf("handler order = %v, want [1 2]", order)
	}
	if last.Measurements["count"] != 3 || last.Metadata["run_id"] != "r1" {
		t.Fatalf("event = %+v, want count 3 and run_id r1", last)
	}
}

func TestPanickingHandlerIsDetached(t *testing.T) {
	calls := 0
	detach := Attach(func(Event) { calls++; panic("bad handler") }, "ev")
	defer detach()
	var good int
	d2 := Attach(func(Event) { good++ }, "ev")
	defer d2()
	Emit("ev", nil, nil)
	Emit("ev", nil, nil)
	if calls != 1 || good != 2 {
		t.Fatalf("panicking handler calls = %d, good handler calls = %d; want 1 and 2", calls, good)
	}
}

func TestConcurrentAttachAndEmit(t *testing.T) {
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := Attach(func(Event) {}, "ev", "other")
			Emit("ev", nil, map[string]any{"i": i})
			d()
		}()
	}
	wg.Wait()
}

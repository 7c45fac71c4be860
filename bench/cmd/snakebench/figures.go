package main

import (
	"math"
	"slices"
	"time"
)

// target is the bound a figure must reach: its value, or its ratio to the floor,
// compared with Cmp against Bound.
type target struct {
	// Of is "ratio" or "value".
	Of string `json:"of"`
	// Cmp is "<=", "<" or ">=".
	Cmp   string  `json:"cmp"`
	Bound float64 `json:"bound"`
	Text  string  `json:"text"`
}

func ratioAtMost(b float64, text string) *target {
	return &target{Of: "ratio", Cmp: "<=", Bound: b, Text: text}
}

func ratioAtLeast(b float64, text string) *target {
	return &target{Of: "ratio", Cmp: ">=", Bound: b, Text: text}
}

func valueBelow(b float64, text string) *target {
	return &target{Of: "value", Cmp: "<", Bound: b, Text: text}
}

func valueAtMost(b float64, text string) *target {
	return &target{Of: "value", Cmp: "<=", Bound: b, Text: text}
}

func (t *target) holds(v float64) bool {
	switch t.Cmp {
	case "<=":
		return v <= t.Bound
	case "<":
		return v < t.Bound
	case ">=":
		return v >= t.Bound
	}
	return false
}

// figure is one number of the report with the floor it is judged against. A nil
// Value is a figure that could not be measured (a feature not built yet); a nil
// Target is a figure shown for information.
type figure struct {
	Name    string   `json:"name"`
	Label   string   `json:"label"`
	Value   *float64 `json:"value"`
	Unit    string   `json:"unit"`
	Floor   *float64 `json:"floor"`
	FloorOf string   `json:"floor_of,omitempty"`
	Ratio   *float64 `json:"ratio"`
	Target  *target  `json:"target"`
	Met     *bool    `json:"met"`
	Note    string   `json:"note,omitempty"`
}

// judge fills Ratio and Met from Value, Floor and Target.
func (f *figure) judge() *figure {
	if f.Value != nil && f.Floor != nil && *f.Floor > 0 {
		f.Ratio = num(*f.Value / *f.Floor)
	}
	if f.Target == nil {
		return f
	}
	met := false
	switch {
	case f.Target.Of == "ratio" && f.Ratio != nil:
		met = f.Target.holds(*f.Ratio)
	case f.Target.Of == "value" && f.Value != nil:
		met = f.Target.holds(*f.Value)
	}
	f.Met = &met
	return f
}

// num rounds v to four significant digits and returns it as a JSON number.
func num(v float64) *float64 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return &v
	}
	scale := math.Pow(10, 3-math.Floor(math.Log10(math.Abs(v))))
	r := math.Round(v*scale) / scale
	return &r
}

// quantile returns the nearest-rank quantile p (0..1) of sorted durations.
func quantile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func sortedCopy(d []time.Duration) []time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// megabytes renders bytes in MB of 10^6 bytes, the unit of the targets.
func megabytes(b int64) float64 { return float64(b) / 1e6 }

// summary is the percentiles of one latency series, in microseconds.
type summary struct {
	Samples int     `json:"samples"`
	Min     float64 `json:"min"`
	P50     float64 `json:"p50"`
	P90     float64 `json:"p90"`
	P99     float64 `json:"p99"`
	P999    float64 `json:"p99_9"`
	Max     float64 `json:"max"`
}

func summarize(d []time.Duration) summary {
	s := sortedCopy(d)
	q := func(p float64) float64 { return *num(micros(quantile(s, p))) }
	return summary{
		Samples: len(s), Min: q(0), P50: q(0.5), P90: q(0.9), P99: q(0.99),
		P999: q(0.999), Max: q(1),
	}
}

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// report is bench/latest.json.
type report struct {
	GeneratedAt string     `json:"generated_at"`
	ElapsedS    float64    `json:"elapsed_s"`
	Machine     machine    `json:"machine"`
	Figures     []*figure  `json:"figures"`
	Series      seriesData `json:"series"`
	Stream      any        `json:"stream"`
	Notes       []string   `json:"notes"`
	// AgentWarnings are the warn and error lines the agents logged during the run.
	AgentWarnings []string `json:"agent_warnings"`
}

// machine says where the figures come from; the load average tells a reader how
// busy the shared machine was.
type machine struct {
	CPUs        int    `json:"cpus"`
	OS          string `json:"os"`
	Kernel      string `json:"kernel"`
	Go          string `json:"go"`
	Python      string `json:"python"`
	LoadBefore  string `json:"loadavg_before"`
	LoadAfter   string `json:"loadavg_after"`
	Concurrency []int  `json:"concurrency"`
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func newReport(res *results, began time.Time, loadBefore string) *report {
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	notes := append([]string{sessionNote(res)}, res.notes...)
	if !res.stream.Measured {
		notes = append(notes, "streaming: "+res.stream.Why)
	}
	return &report{
		GeneratedAt: began.UTC().Format(time.RFC3339),
		ElapsedS:    *num(time.Since(began).Seconds()),
		Machine: machine{
			CPUs: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH,
			Kernel: strings.TrimSpace(string(kernel)), Go: runtime.Version(),
			Python: res.pythonVersion, LoadBefore: loadBefore, LoadAfter: loadavg(),
			Concurrency: concurrencies,
		},
		Figures: buildFigures(res), Series: seriesOf(res), Stream: res.stream,
		Notes: notes, AgentWarnings: append([]string{}, res.warnings...),
	}
}

func (r *report) write(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	return nil
}

func readReport(path string) (*report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read report %s: %w", path, err)
	}
	rep := &report{}
	if err := json.Unmarshal(b, rep); err != nil {
		return nil, fmt.Errorf("decode report %s: %w", path, err)
	}
	return rep, nil
}

// cells renders one figure as table cells: figure, value, floor, ratio, target,
// met, what the floor is.
func (f *figure) cells() []string {
	return []string{
		f.Label, quantity(f.Value, f.Unit), quantity(f.Floor, f.Unit),
		ratioText(f.Ratio), targetText(f.Target), metText(f.Met), f.FloorOf,
	}
}

var tableHeader = []string{"figure", "value", "floor", "ratio", "target", "met", "floor is"}

// printTable writes the figures as aligned text.
func (r *report) printTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(tableHeader, "\t"))
	for _, f := range r.Figures {
		fmt.Fprintln(tw, strings.Join(f.cells(), "\t"))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print table: %w", err)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	return nil
}

// printMarkdown writes the figures as a Markdown table, for the README.
func (r *report) printMarkdown(w io.Writer) {
	fmt.Fprintf(w, "| %s |\n", strings.Join(tableHeader, " | "))
	fmt.Fprintf(w, "|%s\n", strings.Repeat("---|", len(tableHeader)))
	for _, f := range r.Figures {
		fmt.Fprintf(w, "| %s |\n", strings.Join(f.cells(), " | "))
	}
}

func quantity(v *float64, unit string) string {
	if v == nil {
		return "—"
	}
	return short(*v) + " " + unit
}

// short renders a number with the digits that mean something at its size.
func short(v float64) string {
	switch a := max(v, -v); {
	case a == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func ratioText(r *float64) string {
	if r == nil {
		return "—"
	}
	return fmt.Sprintf("%.2f", *r)
}

func targetText(t *target) string {
	if t == nil {
		return "—"
	}
	return t.Text
}

func metText(m *bool) string {
	switch {
	case m == nil:
		return "—"
	case *m:
		return "yes"
	}
	return "NO"
}

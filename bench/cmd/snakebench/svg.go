package main

import (
	"fmt"
	"html"
	"math"
	"os"
	"strings"
	"time"
)

// canvas builds an SVG document from a few primitives.
type canvas struct{ b strings.Builder }

func (c *canvas) line(x1, y1, x2, y2 float64, stroke string, dashed bool) {
	dash := ""
	if dashed {
		dash = ` stroke-dasharray="4 3"`
	}
	fmt.Fprintf(&c.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"%s/>`+"\n",
		x1, y1, x2, y2, stroke, dash)
}

func (c *canvas) text(x, y float64, anchor string, size int, s string) {
	fmt.Fprintf(&c.b, `<text x="%.1f" y="%.1f" text-anchor="%s" font-size="%d">%s</text>`+"\n",
		x, y, anchor, size, html.EscapeString(s))
}

func (c *canvas) rect(x, y, w, h float64, fill string) {
	fmt.Fprintf(&c.b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n",
		x, y, w, h, fill)
}

func (c *canvas) polyline(pts [][2]float64, stroke string, dashed bool) {
	var p strings.Builder
	for _, pt := range pts {
		fmt.Fprintf(&p, "%.1f,%.1f ", pt[0], pt[1])
	}
	dash := ""
	if dashed {
		dash = ` stroke-dasharray="5 3"`
	}
	fmt.Fprintf(&c.b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n",
		strings.TrimSpace(p.String()), stroke, dash)
}

// box is a plot area in canvas coordinates.
type box struct{ x, y, w, h float64 }

const (
	svgWidth  = 1060
	svgHeight = 470
)

var latencyBox = box{x: 70, y: 50, w: 420, h: 320}
var throughputBox = box{x: 620, y: 50, w: 410, h: 320}

// curve is one latency series drawn as latency against percentile.
type curve struct {
	name, color string
	dashed      bool
	q           func(p float64) float64 // µs at quantile p
}

// writeSVG draws the latency distribution of product and floor beside the
// throughput per concurrency.
func writeSVG(path string, res *results) error {
	c := &canvas{}
	fmt.Fprintf(&c.b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" `+
		`font-family="sans-serif">`+"\n", svgWidth, svgHeight)
	c.rect(0, 0, svgWidth, svgHeight, "white")
	drawLatency(c, latencyCurves(res))
	drawThroughput(c, res)
	c.b.WriteString("</svg>\n")
	if err := os.WriteFile(path, []byte(c.b.String()), 0o644); err != nil {
		return fmt.Errorf("write picture %s: %w", path, err)
	}
	return nil
}

func latencyCurves(res *results) []curve {
	sorted := map[string][]time.Duration{}
	for name, d := range res.lat {
		sorted[name] = sortedCopy(d)
	}
	of := func(name string) func(float64) float64 {
		return func(p float64) float64 { return micros(quantile(sorted[name], p)) }
	}
	floor := func(p float64) float64 { return of(seriesNATS)(p) + of(seriesPipe)(p) }
	return []curve{
		{"product: ping", "#d62728", false, of(seriesPlain)},
		{"product: ping in a session", "#ff7f0e", false, of(seriesSession)},
		{"floor: NATS + pipe", "#1f77b4", false, floor},
		{"floor: bare NATS", "#2ca02c", true, of(seriesNATS)},
		{"floor: bare pipe", "#9467bd", true, of(seriesPipe)},
		{"worker runtime over its pipe", "#7f7f7f", true, of(seriesRuntime)},
	}
}

// nines maps x in [0, 3] to the percentile 1 - 10^-x: 0, 90, 99, 99.9.
func nines(x float64) float64 { return 1 - math.Pow(10, -x) }

func drawLatency(c *canvas, curves []curve) {
	b := latencyBox
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, cv := range curves {
		lo = min(lo, math.Log10(max(cv.q(0), 1)))
		hi = max(hi, math.Log10(max(cv.q(nines(3)), 1)))
	}
	lo, hi = math.Floor(lo), math.Ceil(hi)
	hi = max(hi, lo+1)
	y := func(us float64) float64 { return b.y + b.h - (math.Log10(max(us, 1))-lo)/(hi-lo)*b.h }
	x := func(n float64) float64 { return b.x + n/3*b.w }
	c.text(b.x+b.w/2, 28, "middle", 15, "Latency of sequential calls, by percentile")
	for d := lo; d <= hi; d++ {
		c.line(b.x, y(math.Pow(10, d)), b.x+b.w, y(math.Pow(10, d)), "#ddd", false)
		c.text(b.x-8, y(math.Pow(10, d))+4, "end", 11, microsLabel(math.Pow(10, d)))
	}
	for i, l := range []string{"p0", "p90", "p99", "p99.9"} {
		c.line(x(float64(i)), b.y, x(float64(i)), b.y+b.h, "#ddd", false)
		c.text(x(float64(i)), b.y+b.h+16, "middle", 11, l)
	}
	for _, cv := range curves {
		var pts [][2]float64
		for i := 0; i <= 120; i++ {
			n := float64(i) / 40
			pts = append(pts, [2]float64{x(n), y(cv.q(nines(n)))})
		}
		c.polyline(pts, cv.color, cv.dashed)
	}
	legend(c, b.x, b.y+b.h+40, curves)
}

func microsLabel(us float64) string {
	switch {
	case us >= 1e6:
		return fmt.Sprintf("%.0f s", us/1e6)
	case us >= 1e3:
		return fmt.Sprintf("%.0f ms", us/1e3)
	}
	return fmt.Sprintf("%.0f µs", us)
}

func legend(c *canvas, x, y float64, curves []curve) {
	for i, cv := range curves {
		col, row := float64(i%2), float64(i/2)
		lx, ly := x+col*220, y+row*18
		c.polyline([][2]float64{{lx, ly - 4}, {lx + 24, ly - 4}}, cv.color, cv.dashed)
		c.text(lx+30, ly, "start", 12, cv.name)
	}
}

// bar is one variant of the throughput panel.
type bar struct{ series, name, color string }

var bars = []bar{
	{seriesFloor, "floor: NATS → 2 bare pipes", "#1f77b4"},
	{seriesPlain, "product: ping", "#d62728"},
	{seriesSession, "product: ping in a session", "#ff7f0e"},
}

func drawThroughput(c *canvas, res *results) {
	b := throughputBox
	top := 1.0
	for _, br := range bars {
		for _, v := range res.tput[br.series] {
			top = max(top, v)
		}
	}
	top = niceCeil(top)
	y := func(v float64) float64 { return b.y + b.h - v/top*b.h }
	c.text(b.x+b.w/2, 28, "middle", 15,
		fmt.Sprintf("Throughput with %d workers, by concurrency", benchWorkers))
	for i := 0; i <= 5; i++ {
		v := top * float64(i) / 5
		c.line(b.x, y(v), b.x+b.w, y(v), "#ddd", false)
		c.text(b.x-8, y(v)+4, "end", 11, short(v))
	}
	c.text(b.x-50, b.y-12, "start", 11, unitRate)
	group := b.w / float64(len(concurrencies))
	width := group / float64(len(bars)+1)
	for gi, conc := range concurrencies {
		gx := b.x + float64(gi)*group + width/2
		for bi, br := range bars {
			v := res.tput[br.series][conc]
			bx := gx + float64(bi)*width
			c.rect(bx, y(v), width-2, b.y+b.h-y(v), br.color)
			c.text(bx+width/2-1, y(v)-4, "middle", 10, short(v))
		}
		c.text(b.x+float64(gi)*group+group/2, b.y+b.h+16, "middle", 11,
			fmt.Sprintf("concurrency %d", conc))
	}
	curves := make([]curve, len(bars))
	for i, br := range bars {
		curves[i] = curve{name: br.name, color: br.color}
	}
	legend(c, b.x, b.y+b.h+40, curves)
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

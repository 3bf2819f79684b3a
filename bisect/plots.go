package bisect

import (
	"fmt"
	"html"
	"math"
	"strings"
	"time"

	"github.com/kbisect/kbisect/internal/gitrepo"
)

// The two plots are drawn here as SVG, axes included, rather than with a
// plotting library such as gonum.org/v1/plot: the axes are a few dozen
// lines, and every run keeps its hover title (<title>) in the timeline.

// reportBins is the number of columns of the posterior plot.
const reportBins = 200

// binPosterior sums p into bins columns and divides each by the number of
// positions it holds (a density, so that bins of unequal width compare).
func binPosterior(p []float64, bins int) []float64 {
	if len(p) <= bins {
		return append([]float64(nil), p...)
	}
	out := make([]float64, bins)
	cnt := make([]float64, bins)
	for i, v := range p {
		out[i*bins/len(p)] += v
		cnt[i*bins/len(p)]++
	}
	for i := range out {
		out[i] /= cnt[i]
	}
	return out
}

// niceStep is the tick step, 1, 2 or 5 times a power of ten, that cuts
// span into about n intervals.
func niceStep(span float64, n int) float64 {
	if span <= 0 || n < 1 {
		return 1
	}
	raw := span / float64(n)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// svgOpen starts an SVG of w x h.
func svgOpen(b *strings.Builder, w, h int) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", w, h, w, h)
}

// shadeLevels is the number of shades of the posterior plot; a cell's
// shade is sqrt(p / the row's largest p), so that small probabilities
// still show.
const shadeLevels = 15

// PosteriorSVG plots the posterior after every run as a heat map (rows:
// runs, top to bottom; columns: commits, good to bad, labelled by position
// and hash), with its colour scale, and the probability of the most
// probable commit as a curve on the right against the confidence asked.
func (j *Job) PosteriorSVG() string {
	const W, H, left, top, bottom, side, gap = 700, 340, 90, 40, 96, 150, 20
	rows := j.posterior
	var b strings.Builder
	svgOpen(&b, left+W+gap+side+20, top+H+bottom)
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="#fff" stroke="#999"/>`+"\n", left, top, W, H)
	if len(rows) == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d">no runs yet</text></svg>`, left+10, top+20)
		return b.String()
	}
	nrows := min(len(rows), 300)
	rh := float64(H) / float64(nrows)
	for r := 0; r < nrows; r++ {
		step := r * len(rows) / nrows
		if nrows < len(rows) {
			step = (r+1)*len(rows)/nrows - 1
		}
		row := rows[step]
		mx := 0.0
		for _, v := range row {
			mx = math.Max(mx, v)
		}
		if mx <= 0 {
			continue
		}
		cw := float64(W) / float64(len(row))
		y := float64(top) + float64(r)*rh
		level := func(v float64) int { return int(math.Round(shadeLevels * math.Sqrt(v/mx))) }
		// Neighbouring cells of equal shade are one rectangle.
		for c := 0; c < len(row); {
			l := level(row[c])
			e := c + 1
			for e < len(row) && level(row[e]) == l {
				e++
			}
			if l > 0 {
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.2f" fill="#b22" fill-opacity="%.2f"/>`, float64(left)+float64(c)*cw, y, float64(e-c)*cw, rh+0.3, float64(l)/shadeLevels)
			}
			c = e
		}
		b.WriteString("\n")
	}
	// y axis: run numbers.
	ystep := math.Max(1, niceStep(float64(len(rows)), 6))
	for n := ystep; n <= float64(len(rows)); n += ystep {
		y := float64(top) + n/float64(len(rows))*float64(H)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#666"/><text x="%d" y="%.1f" text-anchor="end">%d</text>`+"\n", left-4, y, left, y, left-6, y+4, int(n))
	}
	fmt.Fprintf(&b, `<text x="12" y="%d" transform="rotate(-90 12 %d)" text-anchor="middle">after run</text>`+"\n", top+H/2, top+H/2)
	// x axis: commits, by position, with their short hashes.
	nc := len(j.commits)
	xOf := func(pos int) float64 { return float64(left) + (float64(pos)+0.5)/float64(nc)*float64(W) }
	xstep := int(math.Max(1, niceStep(float64(nc-1), 7)))
	for pos := 0; pos < nc; pos += xstep {
		x := xOf(pos)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#666"/>`, x, top+H, x, top+H+4)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="end" transform="rotate(-35 %.1f %d)">%d %s</text>`+"\n", x, top+H+14, x, top+H+14, pos, j.commits[pos].Short())
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d">good</text><text x="%d" y="%d" text-anchor="end">bad</text>`+"\n", left, top+H+bottom-6, left+W, top+H+bottom-6)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">commit (position in the range, hash)</text>`+"\n", left+W/2, top+H+bottom-6)
	fmt.Fprintf(&b, `<text x="%d" y="%d">posterior after each of %d runs, top to bottom (%d commits)</text>`+"\n", left, top-26, len(rows), nc-1)
	// Colour scale.
	sx := left + W - 5*48
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">shade: p / the row's largest p</text>`, sx-6, top-8)
	for i, f := range []float64{0.01, 0.1, 0.25, 0.5, 1} {
		l := math.Round(shadeLevels*math.Sqrt(f)) / shadeLevels
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="10" fill="#b22" fill-opacity="%.2f" stroke="#999"/><text x="%d" y="%d">%g</text>`, sx+i*48, top-17, l, sx+i*48+15, top-8, f)
	}
	b.WriteString("\n")
	if pos, ok := j.boundary(); ok && j.finished != nil && j.finished.Status == StatusFound {
		// Between the last commit without the bug and the first with it
		// (in the search's order: for a fix, the fix and the last commit
		// with the bug).
		x := float64(left) + float64(pos)/float64(nc)*float64(W)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#236" stroke-dasharray="2,4"/>`+"\n", x, top, x, top+H)
		label := j.culpritLabel() + " " + gitrepo.Short(j.finished.Culprit)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%d" height="14" fill="#fff" fill-opacity="0.8"/><text x="%.1f" y="%d" fill="#236" text-anchor="middle">%s</text>`+"\n", x-float64(3*len(label)), top+2, 6*len(label), x, top+13, label)
	}
	// The most probable commit's probability, run by run.
	x0, sw := float64(left+W+gap), float64(side-10)
	fmt.Fprintf(&b, `<rect x="%.0f" y="%d" width="%.0f" height="%d" fill="none" stroke="#999"/>`+"\n", x0, top, sw, H)
	var pts []string
	for i, p := range j.bestP {
		y := float64(top) + float64(i+1)/float64(len(j.bestP))*float64(H)
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x0+p*sw, y))
	}
	fmt.Fprintf(&b, `<polyline fill="none" stroke="#236" stroke-width="1.5" points="%s"/>`+"\n", strings.Join(pts, " "))
	for _, t := range []float64{0, 0.5, 1} {
		x := x0 + t*sw
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#666"/><text x="%.1f" y="%d" text-anchor="middle">%g</text>`+"\n", x, top+H, x, top+H+4, x, top+H+16, t)
	}
	conf := j.Spec.Options.Confidence
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#2a7" stroke-dasharray="3,3"/><text x="%.1f" y="%d" fill="#2a7" text-anchor="end">confidence %g</text>`+"\n", x0+conf*sw, top, x0+conf*sw, top+H, x0+conf*sw-2, top+H+30, conf)
	fmt.Fprintf(&b, `<text x="%.0f" y="%d">P(most probable commit)</text>`+"\n", x0, top-8)
	b.WriteString("</svg>")
	return b.String()
}

// timelineColors are the timeline's colours, with the legend's words.
var timelineColors = []struct{ class, color, text string }{
	{"pass", "#2a7", "pass"},
	{"fail", "#c33", "fail"},
	{"other", "#a5a", "fail of another signature (not counted)"},
	{"skip", "#999", "skip"},
	{"error", "#e90", "infrastructure error"},
	{"revert", "#36c", "revert check"},
}

// TimelineSVG draws every run on a time axis (ticks in minutes or
// seconds since the first run began), one lane per worker, with a legend.
func (j *Job) TimelineSVG() string {
	const W, lane, left, top, bottom = 800, 18, 70, 24, 56
	type bar struct {
		lane       int
		start, end time.Time
		class      string
		title      string
	}
	var bars []bar
	lanes := j.Spec.Options.Parallel
	var t0, t1 time.Time
	for _, r := range j.records {
		if r.Type != RecRun && r.Type != RecInfra && r.Type != RecRevert {
			continue
		}
		end := r.Time
		start := end.Add(-time.Duration(r.Wall * float64(time.Second)))
		class := string(r.Verdict)
		switch {
		case r.Type == RecInfra:
			class = "error"
		case r.Type == RecRevert:
			class = "revert"
		case r.Verdict == Fail && !j.core.Matches(r.FailSig):
			class = "other"
		}
		lanes = max(lanes, r.Worker+1)
		bars = append(bars, bar{r.Worker, start, end, class, fmt.Sprintf("#%d %s %s %.1fs", r.Seq, gitrepo.Short(r.Commit), r.Verdict, r.Elapsed)})
		if t0.IsZero() || start.Before(t0) {
			t0 = start
		}
		if end.After(t1) {
			t1 = end
		}
	}
	H := top + lanes*lane + bottom
	var b strings.Builder
	svgOpen(&b, W+left+20, H)
	if len(bars) == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d">no runs yet</text></svg>`, left, top)
		return b.String()
	}
	span := math.Max(t1.Sub(t0).Seconds(), 1)
	for l := 0; l < lanes; l++ {
		fmt.Fprintf(&b, `<text x="4" y="%d">worker %d</text>`+"\n", top+l*lane+12, l)
	}
	color := func(class string) string {
		for _, c := range timelineColors {
			if c.class == class {
				return c.color
			}
		}
		return "#999"
	}
	for _, br := range bars {
		x := float64(left) + br.start.Sub(t0).Seconds()/span*W
		w := math.Max(br.end.Sub(br.start).Seconds()/span*W, 0.8)
		fmt.Fprintf(&b, `<rect x="%.2f" y="%d" width="%.2f" height="%d" fill="%s"><title>%s</title></rect>`+"\n", x, top+br.lane*lane, w, lane-4, color(br.class), html.EscapeString(br.title))
	}
	// Time axis.
	axisY := top + lanes*lane
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#666"/>`+"\n", left, axisY, left+W, axisY)
	unit, div := "s", 1.0
	if span >= 180 {
		unit, div = "min", 60
	}
	step := niceStep(span/div, 8)
	for t := 0.0; t <= span/div+1e-9; t += step {
		x := float64(left) + t*div/span*W
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#666"/><text x="%.1f" y="%d" text-anchor="middle">%g</text>`+"\n", x, axisY, x, axisY+4, x, axisY+16, math.Round(t*100)/100)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s since the first run began</text>`+"\n", left+W, axisY+30, unit)
	lx := left
	for _, c := range timelineColors {
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>`, lx, axisY+38, c.color, lx+13, axisY+47, html.EscapeString(c.text))
		lx += 13 + 6*len(c.text) + 14
	}
	b.WriteString("\n</svg>")
	return b.String()
}

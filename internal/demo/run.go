package demo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/kbisect/kbisect/bisect"
	"github.com/kbisect/kbisect/bisect/kernel"
	"github.com/kbisect/kbisect/internal/cachedir"
	"github.com/kbisect/kbisect/internal/gitrepo"
	"github.com/kbisect/kbisect/kbuild"
	"github.com/kbisect/kbisect/kconfigs"
	"github.com/kbisect/kbisect/testcases"
)

// Options configure a demo.
type Options struct {
	// Commits in the history after the imported tree (64 by default).
	Commits int
	Seed    uint64
	// Tarball is the kernel source the history starts from (default
	// Debian's linux-source-6.1), OneIn the bug's rate (see
	// HistoryOptions).
	Tarball string
	OneIn   int
	// Hypervisor runs the pairs under QEMU (default) or as Xen domUs
	// ("xen", which adds the xen-guest fragment); Fragments are more
	// fragments to merge (built-in names or files, see kconfigs.Resolve).
	Hypervisor string
	Fragments  []string
	// Append is added to the guests' kernel command lines.
	Append string
	// RunTime is the length of a first run of a commit (the search may
	// ask for longer ones).
	RunTime time.Duration
	// JobDir holds the bisection; empty: a fresh one under the cache.
	JobDir string
	// Progress gets one line per event; nil is quiet.
	Progress func(string)
}

// Phases are the wall times of the demo's parts.
type Phases struct {
	History float64 `json:"history_seconds"`
	Builds  float64 `json:"build_seconds"`
	Boots   float64 `json:"boot_seconds"`
	Runs    float64 `json:"run_seconds"`
	Total   float64 `json:"total_seconds"`
}

// Result is what the demo found, next to what it injected.
type Result struct {
	Expected   string         `json:"expected"`
	Found      string         `json:"found"`
	Correct    bool           `json:"correct"`
	Confidence float64        `json:"confidence"`
	Status     string         `json:"status"`
	Subject    string         `json:"subject"`
	Runs       int            `json:"runs"`
	Builds     int            `json:"builds"`
	CacheHits  int            `json:"build_cache_hits"`
	Wire       string         `json:"wire,omitempty"`
	WireDetail string         `json:"wire_detail,omitempty"`
	Phases     Phases         `json:"phases"`
	Job        string         `json:"job"`
	Reports    []string       `json:"reports"`
	Bisection  *bisect.Result `json:"bisection"`
}

// Run makes the demo history, bisects it with the real kernel pipeline and
// says whether the culprit found is the one injected.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Commits == 0 {
		o.Commits = 64
	}
	if o.RunTime == 0 {
		o.RunTime = 20 * time.Second
	}
	say := func(format string, args ...any) {
		if o.Progress != nil {
			o.Progress(fmt.Sprintf(format, args...))
		}
	}
	start := time.Now()
	src := "Debian's linux-source-6.1"
	if o.Tarball != "" {
		src = filepath.Base(o.Tarball)
	}
	say("making the demo history: %d commits on %s", o.Commits, src)
	h, err := Make(ctx, HistoryOptions{Tarball: o.Tarball, Commits: o.Commits, Seed: o.Seed, OneIn: o.OneIn})
	if err != nil {
		return nil, err
	}
	res := &Result{Expected: h.Culprit}
	res.Phases.History = time.Since(start).Seconds()
	repo, err := gitrepo.Open(ctx, h.Dir)
	if err != nil {
		return nil, err
	}
	hist, err := bisect.LoadHistory(ctx, repo, h.Good, h.Bad)
	if err != nil {
		return nil, err
	}
	if o.JobDir == "" {
		o.JobDir = filepath.Join(cachedir.Dir("demo-jobs"), time.Now().Format("20060102-150405"))
	}
	frags, err := kconfigs.SelectFor(o.Hypervisor, o.Fragments, true, "tinyconfig")
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var wire, wireDetail string
	tester := &kernel.Tester{
		Pipeline: &testcases.CommitTest{
			Build: kbuild.Options{Repo: h.Dir, Config: "tinyconfig", Fragments: frags},
			Run: testcases.Options{
				Test: "natt-esp", Topology: "direct", Crypto: "cbc-aes-sha1", Pattern: "prng",
				Capture: true, StopOnFail: true, InjectOffset: -1, Hypervisor: o.Hypervisor, Append: o.Append,
			},
			RunRoot: filepath.Join(o.JobDir, "runs"),
		},
		OnResult: func(commit string, r *testcases.CommitResult) {
			mu.Lock()
			defer mu.Unlock()
			if a := r.Artifact; a != nil {
				if a.CacheHit {
					res.CacheHits++
				} else {
					res.Phases.Builds += a.Elapsed.Seconds()
				}
			}
			if rep := r.Report; rep != nil {
				res.Phases.Boots += rep.BootWallSeconds
				res.Phases.Runs += rep.TestSeconds
				if rep.Verdict == testcases.Fail && commit == h.Culprit && wire == "" {
					wire, wireDetail = rep.Wire.Verdict, rep.Wire.Detail
				}
				if rep.Verdict == testcases.Pass {
					// Keep the evidence of failures; a passing run's
					// capture is only disk.
					for _, p := range rep.Pcaps {
						os.Remove(p)
					}
				}
				say("%s %s: %s (%s)", gitrepo.Short(commit), map[bool]string{true: "built", false: "cached"}[r.Artifact != nil && !r.Artifact.CacheHit], r.Verdict, r.Reason)
			} else {
				say("%s: %s: %s", gitrepo.Short(commit), r.Verdict, r.Reason)
			}
		},
	}
	spec := bisect.JobSpec{
		Repo: h.Dir, Good: h.Good, Bad: h.Bad, GoodRef: "refs/demo/good", BadRef: "refs/heads/demo",
		Options: bisect.Options{
			Unit: bisect.UnitTime, Confidence: 0.99, RunTime: o.RunTime,
			MaxRunTime: 4 * o.RunTime, Budget: 10 * time.Minute,
		},
	}
	job, err := bisect.Create(o.JobDir, spec, hist)
	if err != nil {
		return nil, err
	}
	defer job.Close()
	say("bisecting %d commits (good %s, bad %s), job %s", len(h.Commits), gitrepo.Short(h.Good), gitrepo.Short(h.Bad), o.JobDir)
	br, err := job.Run(ctx, tester, func(p bisect.Progress) {
		// One line per run that ends, as kbisect bisect prints them.
		if !p.Started && p.Finished == nil {
			say("%s", p)
		}
	})
	if err != nil {
		return nil, err
	}
	res.Bisection = br
	res.Found, res.Confidence, res.Status, res.Subject = br.Culprit, br.Confidence, br.Status, br.Subject
	res.Correct = br.Culprit == h.Culprit
	res.Runs, res.Builds = br.Runs, br.Builds
	res.Wire, res.WireDetail = wire, wireDetail
	res.Job = o.JobDir
	if res.Reports, err = job.WriteReports(o.JobDir); err != nil {
		return nil, err
	}
	res.Phases.Total = time.Since(start).Seconds()
	return res, nil
}

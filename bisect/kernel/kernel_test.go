package kernel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kbisect/kbisect/bisect"
	"github.com/kbisect/kbisect/kbuild"
	"github.com/kbisect/kbisect/testcases"
	"github.com/kbisect/kbisect/testcases/proto"
)

// fakePipeline returns a canned result.
type fakePipeline struct {
	res      *testcases.CommitResult
	rev      string
	duration time.Duration
}

func (f *fakePipeline) Test(ctx context.Context, rev string, d time.Duration) *testcases.CommitResult {
	f.rev, f.duration = rev, d
	return f.res
}

// TestOutcomes checks the mapping from the commit pipeline's verdicts to
// the search's outcomes: what counts as built, the exposure a run gave (its
// traffic), the evidence, and which failures are errors.
func TestOutcomes(t *testing.T) {
	const budget = 5 * time.Minute
	built := &kbuild.Artifact{Signature: "sig1", Elapsed: 3 * time.Minute}
	cached := &kbuild.Artifact{Signature: "sig2", CacheHit: true, Elapsed: time.Second}
	infra := errors.New("build abc: no space left on device")
	tests := []struct {
		name    string
		res     *testcases.CommitResult
		want    bisect.Outcome
		wantErr error
	}{
		// Exposure is traffic: 150 MB checked is a minute at 20 Mbit/s.
		{"fail stops early", &testcases.CommitResult{Verdict: testcases.Fail, Reason: "corruption", Artifact: built,
			Report: &testcases.Report{Verdict: testcases.Fail, Test: "natt-esp", TestSeconds: 42, BytesVerified: 105e6,
				Corruptions: []proto.Corruption{{Length: 1, Expected: proto.HexBytes{0x41}, Seen: proto.HexBytes{0x51}}}, Wire: testcases.Wire{Verdict: "decap"}}},
			bisect.Outcome{Verdict: bisect.Fail, Reason: "corruption", Built: true, BuildTime: 3 * time.Minute, Signature: "sig1", Elapsed: 42 * time.Second,
				FailSig: "natt-esp: corruption, wire decap, 1 byte, one bit flipped"}, nil},
		{"a slow pass counts its traffic", &testcases.CommitResult{Verdict: testcases.Pass, Reason: "ok", Artifact: cached,
			Report: &testcases.Report{Verdict: testcases.Pass, TestSeconds: 299, BytesVerified: 150e6}},
			bisect.Outcome{Verdict: bisect.Pass, Reason: "ok", Signature: "sig2", Elapsed: time.Minute}, nil},
		{"does not build", &testcases.CommitResult{Verdict: testcases.Skip, Reason: "build of abc failed: x.c: error: y", Err: &kbuild.BuildError{}},
			bisect.Outcome{Verdict: bisect.Skip, Reason: "build of abc failed: x.c: error: y", Built: true}, nil},
		{"panics", &testcases.CommitResult{Verdict: testcases.Skip, Reason: "the kernel panics: z", Artifact: cached,
			Report: &testcases.Report{Verdict: testcases.Error}},
			bisect.Outcome{Verdict: bisect.Skip, Reason: "the kernel panics: z", Signature: "sig2", Elapsed: budget}, nil},
		{"run error has evidence", &testcases.CommitResult{Verdict: testcases.Error, Reason: "timed out", Artifact: cached,
			Report: &testcases.Report{Verdict: testcases.Error}},
			bisect.Outcome{Verdict: bisect.Error, Reason: "timed out", Signature: "sig2", Elapsed: budget}, nil},
		{"host failure is an error", &testcases.CommitResult{Verdict: testcases.Error, Reason: infra.Error(), Err: infra},
			bisect.Outcome{}, infra},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fp := &fakePipeline{res: tc.res}
			var seen *testcases.CommitResult
			tr := &Tester{Pipeline: fp, OnResult: func(c string, r *testcases.CommitResult) { seen = r }}
			out, err := tr.Test(context.Background(), "abc", budget)
			if err != tc.wantErr {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if fp.rev != "abc" || fp.duration != budget || seen != tc.res {
				t.Errorf("pipeline called with %q %v; OnResult saw %v", fp.rev, fp.duration, seen)
			}
			if tc.res.Report != nil {
				var r testcases.Report
				if json.Unmarshal(out.Evidence, &r) != nil || r.Verdict != tc.res.Report.Verdict {
					t.Errorf("evidence %s", out.Evidence)
				}
			}
			out.Evidence = nil
			if !reflect.DeepEqual(out, tc.want) {
				t.Errorf("outcome\n%+v, want\n%+v", out, tc.want)
			}
		})
	}
}

// TestFailSignature checks the names of failures: what tells one bug from
// another, and nothing that changes from run to run.
func TestFailSignature(t *testing.T) {
	corrupt := func(wire string, c proto.Corruption) *testcases.Report {
		c.Offset = 12345 // not in the signature
		return &testcases.Report{Verdict: testcases.Fail, Test: "natt-esp", Corruptions: []proto.Corruption{c}, Wire: testcases.Wire{Verdict: wire}}
	}
	guests := func(g testcases.GuestReport) *testcases.Report {
		r := &testcases.Report{Verdict: testcases.Fail, Test: "natt-esp"}
		r.Guests[1] = g
		return r
	}
	tests := []struct {
		name string
		r    *testcases.Report
		want string
	}{
		{"pass", &testcases.Report{Verdict: testcases.Pass}, ""},
		{"bit flip at the receiver", corrupt("decap", proto.Corruption{Length: 1, Expected: proto.HexBytes{0}, Seen: proto.HexBytes{0x10}}),
			"natt-esp: corruption, wire decap, 1 byte, one bit flipped"},
		{"zeroed on the sender's side", corrupt("encap", proto.Corruption{Length: 8, Expected: proto.HexBytes{1, 2, 3}, Seen: proto.HexBytes{0, 0, 0}}),
			"natt-esp: corruption, wire encap, 2-16 bytes, zeroed"},
		{"long change through the NAT", corrupt("nat", proto.Corruption{Length: 100, Expected: proto.HexBytes{1, 2}, Seen: proto.HexBytes{7, 9}}),
			"natt-esp: corruption, wire nat, more than 16 bytes, changed"},
		{"authentication failures only", guests(testcases.GuestReport{Role: "receiver", AuthFailures: 3}),
			"natt-esp: ESP authentication failures at the receiver"},
		{"oops", guests(testcases.GuestReport{Role: "receiver", Oopses: []string{"[ 9.1] BUG: kernel NULL pointer dereference, address: 0000000000000008"}}),
			"oops: BUG: kernel NULL pointer dereference, address: N"},
	}
	for _, tc := range tests {
		if got := FailSignature(tc.r); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// linePipeline fails every commit from culprit on with a wire verdict
// and the run's artefacts, as the commit pipeline reports them.
type linePipeline struct {
	pos     map[string]int
	culprit int
	dir     string
}

func (p *linePipeline) Test(ctx context.Context, rev string, d time.Duration) *testcases.CommitResult {
	run := filepath.Join(p.dir, rev[:12])
	r := &testcases.Report{Verdict: testcases.Pass, Test: "natt-esp", TestSeconds: d.Seconds(), BytesVerified: 150e6,
		Wire: testcases.Wire{Verdict: "clean"}, RunDir: run, Pcaps: []string{run + "/wire.pcap"},
		Keys: run + "/wire.keys.json", ESPSA: run + "/wire.esp_sa", XenConsole: run + "/xen.console",
		Guests: [2]testcases.GuestReport{{Role: "sender", Console: run + "/sender.console"}, {Role: "receiver", Console: run + "/receiver.console"}}}
	if p.pos[rev] >= p.culprit {
		r.Verdict, r.Reason, r.Wire.Verdict = testcases.Fail, "corruption", "encap"
		r.Corruptions = []proto.Corruption{{Length: 1, Expected: proto.HexBytes{0}, Seen: proto.HexBytes{1}}}
	}
	return &testcases.CommitResult{Verdict: r.Verdict, Reason: r.Reason, Report: r, Artifact: &kbuild.Artifact{CacheHit: true}}
}

// TestReportRuns: the reports of a kernel bisection show each run's wire
// verdict, and link a failing run's consoles, capture, keys and esp_sa.
func TestReportRuns(t *testing.T) {
	hist := make(bisect.LinearHistory, 16)
	pos := make(map[string]int)
	for i := range hist {
		hist[i] = bisect.Commit{Hash: fmt.Sprintf("%02x%038x", i+1, i+1), Subject: fmt.Sprintf("commit %d", i)}
		pos[hist[i].Hash] = i
	}
	spec := bisect.JobSpec{Repo: "/nonexistent/repo", Good: hist[0].Hash, Bad: hist[15].Hash, TestArgs: []string{"--test=natt-esp"},
		Options: bisect.Options{Confidence: 0.99, Unit: bisect.UnitTime}}
	dir := t.TempDir()
	job, err := bisect.Create(dir, spec, hist)
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	res, err := job.Run(t.Context(), &Tester{Pipeline: &linePipeline{pos: pos, culprit: 9, dir: "/runs"}}, nil)
	if err != nil || res.Culprit != hist[9].Hash {
		t.Fatalf("%v: %+v", err, res)
	}
	var md strings.Builder
	if err := job.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	rows := 0
	for _, line := range strings.Split(md.String(), "\n") {
		f := strings.Split(line, " | ")
		if len(f) != 9 || (f[3] != "pass" && f[3] != "fail") {
			continue
		}
		rows++
		run := "/runs/" + f[2]
		want := map[string]string{"pass": "clean", "fail": "encap"}[f[3]]
		if f[4] != want {
			t.Errorf("run %s: wire %q, want %q", f[0], f[4], want)
		}
		links := []string{"[sender console](<" + run + "/sender.console>)", "[receiver console](<" + run + "/receiver.console>)",
			"[Xen console](<" + run + "/xen.console>)", "[pcap](<" + run + "/wire.pcap>)", "[keys](<" + run + "/wire.keys.json>)", "[esp_sa](<" + run + "/wire.esp_sa>)"}
		for _, l := range links {
			if got := strings.Contains(f[8], l); got != (f[3] == "fail") {
				t.Errorf("run %s (%s): link %s shown: %v", f[0], f[3], l, got)
			}
		}
	}
	if rows != res.Runs {
		t.Errorf("%d run rows, %d runs", rows, res.Runs)
	}
}

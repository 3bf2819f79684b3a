package demo

import (
	"context"
	"testing"
	"time"

	"github.com/kbisect/kbisect/internal/testenv"
)

// TestDemoFindsCulprit is the demo at a small size: a real bisection of 16
// real kernel commits, real builds, real guest pairs, real sporadic
// corruption. It must name the injected commit with the confidence asked.
func TestDemoFindsCulprit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds kernels and bisects for many minutes")
	}
	testenv.NeedRoot(t)
	testenv.NeedQEMU(t)
	r, err := Run(context.Background(), Options{Commits: 16, Seed: 1, RunTime: 15 * time.Second, JobDir: t.TempDir(), Progress: func(s string) { t.Log(s) }})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Correct || r.Status != "found" {
		t.Fatalf("found %s (%s, confidence %.3f), injected %s", r.Found, r.Status, r.Confidence, r.Expected)
	}
	if r.Confidence < 0.99 {
		t.Errorf("confidence %.3f, want >= 0.99", r.Confidence)
	}
	if r.Wire != "" && r.Wire != "decap" && r.Wire != "unknown" {
		t.Errorf("wire verdict %q on the culprit: the bug corrupts after decryption, want decap", r.Wire)
	}
	t.Logf("runs %d, builds %d, phases %+v", r.Runs, r.Builds, r.Phases)
}

package validate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kbisect/kbisect/internal/bisectrun"
	"github.com/kbisect/kbisect/internal/gitrepo"

	"github.com/kbisect/kbisect/internal/cachedir"
	"github.com/kbisect/kbisect/kbuild"
	"github.com/kbisect/kbisect/testcases"
)

// kernelTester builds and runs trees with the commit pipeline (in kbuild's
// own checkout of kbisect's clone); runs stop at their first failure, so a
// failed run contributes its time to that failure.
type kernelTester struct {
	ct        testcases.CommitTest
	log       func(string, ...any)
	artifacts map[*Row]*kbuild.Artifact
}

func newKernelTester(o *testcases.CommitTest, repo, cacheDir string, log func(string, ...any)) *kernelTester {
	k := &kernelTester{ct: *o, log: log, artifacts: map[*Row]*kbuild.Artifact{}}
	k.ct.Build.Repo = repo
	if k.ct.Build.CacheDir == "" {
		k.ct.Build.CacheDir = cacheDir
	}
	if k.ct.RunRoot == "" {
		k.ct.RunRoot = filepath.Join(cachedir.Dir("runs"), "validate-"+time.Now().Format("20060102-150405"))
	}
	k.ct.Run.StopOnFail = true
	return k
}

func (k *kernelTester) prepare(ctx context.Context, row, base *Row, files []string) error {
	k.log("building %s (%s)", row.Name, gitrepo.Short(row.Commit))
	start := time.Now()
	res := k.ct.BuildCommit(ctx, row.Commit)
	var be *kbuild.BuildError
	switch {
	case res.Artifact != nil:
		a := res.Artifact
		row.Build = &BuildInfo{OK: true, Log: a.Log, CacheHit: a.CacheHit, Seconds: a.Elapsed.Seconds()}
		k.artifacts[row] = a
	case res.Verdict != testcases.Skip:
		return res.Err
	case errors.As(res.Err, &be):
		row.Build = &BuildInfo{Error: cleanLine(be.FirstError), Log: be.Log, Seconds: time.Since(start).Seconds()}
		row.Conclusion, row.Detail = DoesNotBuild, "build failed: "+row.Build.Error+" (log: "+be.Log+")"
	default: // a config that lacks what the test needs
		row.Build = &BuildInfo{Error: res.Reason, Seconds: time.Since(start).Seconds()}
		row.Conclusion, row.Detail = DoesNotBuild, res.Reason
	}
	if base != nil && base.Build != nil && base.Build.Log != "" && row.Build.Log != "" {
		bl, err1 := parseBuildLog(base.Build.Log)
		pl, err2 := parseBuildLog(row.Build.Log)
		if err1 == nil && err2 == nil {
			row.Build.Warnings, row.Build.Uncompared = newWarnings(bl, pl, files)
		}
	}
	if row.Build.OK {
		k.log("built %s (cache hit %v, %.0fs), %d new warning(s) in the files it touches", row.Name, row.Build.CacheHit, row.Build.Seconds, len(row.Build.Warnings))
	} else {
		k.log("%s does not build: %s", row.Name, row.Build.Error)
	}
	return nil
}

func (k *kernelTester) run(ctx context.Context, row *Row) (runResult, error) {
	a := k.artifacts[row]
	if a == nil {
		return runResult{}, fmt.Errorf("internal error: %s was not built", row.Name)
	}
	runDir := filepath.Join(k.ct.RunRoot, fmt.Sprintf("%s-%s-%03d", role(row), gitrepo.Short(row.Commit), row.Runs+1))
	duration := k.ct.Run.Duration
	start := time.Now()
	res := k.ct.RunKernel(ctx, a, duration, runDir)
	if res.Report == nil {
		return runResult{}, res.Err
	}
	r := res.Report
	// Exposure in traffic, not wall time (see testcases.Report.Exposure).
	out := runResult{wall: time.Since(start), exposure: r.Exposure().Minutes(), reason: res.Reason}
	switch res.Verdict {
	case testcases.Pass:
		out.outcome = pass
	case testcases.Fail:
		out.outcome = fail
	case testcases.Skip:
		out.outcome = skip
	default:
		if err := ctx.Err(); err != nil {
			return out, err
		}
		out.outcome = infra
		out.reason += " (run dir " + r.RunDir + ")"
	}
	return out, nil
}

// role names a row's tree in run directories and logs.
func role(row *Row) string {
	if row.Index > 0 {
		return fmt.Sprintf("patch%d", row.Index)
	}
	return "base"
}

// execTester runs a command in kbisect's checkout of each tree, as git
// bisect run does (internal/bisectrun). Each run is one trial, whatever
// its length.
type execTester struct {
	cmd   string
	clone *Clone
	// limit is the time limit of a run: the whole budget (a run that
	// takes longer cannot help a conclusion), then an infrastructure
	// failure.
	limit   time.Duration
	runRoot string
	// current is the commit checked out.
	current string
}

func (x *execTester) prepare(ctx context.Context, row, base *Row, files []string) error {
	return nil
}

func (x *execTester) run(ctx context.Context, row *Row) (runResult, error) {
	if x.current != row.Commit {
		// Like git bisect, keep untracked files (the command's build
		// outputs) across checkouts.
		if _, err := runGit(ctx, x.clone.Dir, nil, nil, "checkout", "--quiet", "--force", "--detach", row.Commit); err != nil {
			return runResult{}, fmt.Errorf("check out %s in %s: %w", row.Name, x.clone.Dir, err)
		}
		x.current = row.Commit
	}
	if err := os.MkdirAll(x.runRoot, 0o755); err != nil {
		return runResult{}, err
	}
	r, err := bisectrun.Run(ctx, bisectrun.Command{
		Shell:   x.cmd,
		Dir:     x.clone.Dir,
		Env:     []string{"KBISECT_COMMIT=" + row.Commit, "KBISECT_TREE=" + role(row)},
		Timeout: x.limit,
	})
	if err != nil {
		return runResult{}, err
	}
	// A command only says whether the run failed: each run is one trial.
	res := runResult{wall: r.Elapsed, exposure: 1, reason: r.Reason()}
	if r.Verdict == bisectrun.Abort {
		res.reason = r.Err.Error()
	}
	// Keep the output of the first run of each tree and of every run that
	// did not pass (the last 64 KiB of it).
	if r.Verdict != bisectrun.Good || row.Runs == 0 {
		logPath := filepath.Join(x.runRoot, fmt.Sprintf("%s-%03d.log", role(row), row.Runs+1))
		if err := os.WriteFile(logPath, r.Tail.Bytes(), 0o644); err == nil {
			res.reason += " (log " + logPath + ")"
		}
	}
	res.outcome = outcomes[r.Verdict]
	return res, nil
}

var outcomes = map[bisectrun.Verdict]outcome{
	bisectrun.Good:  pass,
	bisectrun.Bad:   fail,
	bisectrun.Skip:  skip,
	bisectrun.Abort: infra,
}

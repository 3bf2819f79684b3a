package bisect

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kbisect/kbisect/internal/cachedir"
	"github.com/kbisect/kbisect/internal/jsondur"
)

// FormatVersion is the version of the job directory format: 2 stores the
// durations of Options in seconds (1, in nanoseconds, is still read).
const FormatVersion = 2

// JobSpec identifies a bisection and says how to run it. It is the first
// record of the journal; resume needs nothing else.
type JobSpec struct {
	Version int    `json:"version"`
	Repo    string `json:"repo"`
	Good    string `json:"good"`
	Bad     string `json:"bad"`
	GoodRef string `json:"good_ref,omitempty"`
	BadRef  string `json:"bad_ref,omitempty"`
	// Find is what the bisection looks for: FindRegression (empty) or
	// FindFix. Good and Bad keep their meaning in both: the bug does not
	// show on Good and shows on Bad. For a fix, Bad is the older commit.
	Find string `json:"find,omitempty"`
	// Exec is the --exec command; empty for the kernel pipeline.
	Exec string `json:"exec,omitempty"`
	// TestArgs are the kernel test's command-line flags, kept opaque.
	TestArgs []string `json:"test_args,omitempty"`
	// Cwd is where the bisection was started (relative paths in TestArgs
	// are relative to it).
	Cwd     string  `json:"cwd,omitempty"`
	Options Options `json:"options"`
}

// What a bisection looks for (JobSpec.Find).
const (
	// FindRegression looks for the first commit on which the bug shows:
	// good is an ancestor of bad.
	FindRegression = "regression"
	// FindFix looks for the first commit on which the bug no longer shows:
	// bad is an ancestor of good. A failure still proves the bug is there
	// and a pass is still weak evidence that it is not, so the search runs
	// over the range from good back to bad: the model's "first bad commit"
	// is then the last commit with the bug, and the fix is the commit after
	// it.
	FindFix = "fix"
)

// IsFix says whether the bisection looks for a fix.
func (s JobSpec) IsFix() bool { return s.Find == FindFix }

// DefaultDir is the job directory of a bisection when none is given: under
// kbisect's cache, named after the repository and a hash of what makes
// the bisection (so that the same command finds its job again).
func (s JobSpec) DefaultDir() string {
	key := s.Repo + "\x00" + s.Good + "\x00" + s.Bad + "\x00" + s.Exec + "\x00" + strings.Join(s.TestArgs, "\x00")
	if s.IsFix() {
		key += "\x00fix"
	}
	h := sha256.Sum256([]byte(key))
	return filepath.Join(cachedir.Dir("bisect"), filepath.Base(s.Repo)+"-"+hex.EncodeToString(h[:6]))
}

// ParseBudget reads a budget: a number of runs ("200") or a test time
// ("30m", "2h").
func ParseBudget(s string) (runs int, d time.Duration, err error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 {
			return 0, 0, fmt.Errorf("budget %s: give at least 1 run, or a duration such as 30m", s)
		}
		return n, 0, nil
	}
	d, err = time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, 0, fmt.Errorf("budget %q: give a number of runs (200) or a test time (30m, 2h)", s)
	}
	return 0, d, nil
}

// Options are the settings of a bisection.
type Options struct {
	// Strategy is "bayes" (default) or "classic[:K]"; see ParseStrategy.
	Strategy   string  `json:"strategy"`
	Confidence float64 `json:"confidence"`
	Unit       Unit    `json:"unit"`
	// BudgetRuns or Budget bound the test given to bad to show a failure
	// before the search (the endpoint check). In runs mode a time Budget
	// is also capped at 1000 runs.
	BudgetRuns int           `json:"budget_runs,omitempty"`
	Budget     time.Duration `json:"-"` // budget_s
	// RunTime and MaxRunTime bound the length of one run in time mode.
	RunTime    time.Duration `json:"-"` // run_time_s
	MaxRunTime time.Duration `json:"-"` // max_run_time_s
	// Timeout is the time limit of one run in runs mode (0: none).
	Timeout time.Duration `json:"-"` // timeout_s
	// BuildCost is the cost of a build in runs (runs mode) or minutes (time
	// mode); 0 means measured from the builds done.
	BuildCost float64 `json:"build_cost,omitempty"`
	// Parallel is the number of tests in flight at once.
	Parallel int `json:"parallel,omitempty"`
	// Retries is how many infrastructure errors in a row are retried
	// before the bisection stops.
	Retries      int           `json:"retries,omitempty"`
	RetryBackoff time.Duration `json:"-"` // retry_backoff_s
	// MaxRuns and MaxTime stop the search (inconclusive) when reached.
	MaxRuns int           `json:"max_runs,omitempty"`
	MaxTime time.Duration `json:"-"` // max_time_s
	// VerifyRevert tests bad with the culprit reverted once it is found.
	VerifyRevert bool `json:"verify_revert,omitempty"`
	// Signature, a regular expression, picks the failures bisected by
	// their signature (Outcome.FailSig); empty: the signature of the first
	// failure of bad.
	Signature string      `json:"signature,omitempty"`
	Model     ModelParams `json:"model,omitzero"`
}

func (o *Options) defaults() {
	if o.Strategy == "" {
		o.Strategy = "bayes"
	}
	if o.Confidence <= 0 || o.Confidence >= 1 {
		o.Confidence = 0.99
	}
	if o.Unit == "" {
		o.Unit = UnitRuns
	}
	if o.BudgetRuns <= 0 && o.Budget <= 0 {
		o.Budget = 30 * time.Minute
	}
	if o.RunTime <= 0 {
		o.RunTime = time.Minute
	}
	if o.MaxRunTime < o.RunTime {
		o.MaxRunTime = 16 * o.RunTime
	}
	if o.Parallel < 1 {
		o.Parallel = 1
	}
	if o.Retries <= 0 {
		o.Retries = 3
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = time.Second
	}
}

// Validate checks the options as given, then sets the defaults of those
// left zero. A value that cannot be meant (a confidence that is not a
// probability above one half, a negative duration, count or cost) is an
// error naming its flag, never replaced by a default.
func (o *Options) Validate() error {
	if o.Confidence != 0 && !(o.Confidence > 0.5 && o.Confidence < 1) {
		return fmt.Errorf("--confidence %g: give a probability between 0.5 and 1, such as 0.99", o.Confidence)
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"timeout", o.Timeout}, {"max-time", o.MaxTime}, {"run-time", o.RunTime}, {"max-run-time", o.MaxRunTime}, {"budget", o.Budget}} {
		if d.v < 0 {
			return fmt.Errorf("--%s %s: give a duration of 0 or more", d.flag, d.v)
		}
	}
	for _, n := range []struct {
		flag string
		v    int
	}{{"max-runs", o.MaxRuns}, {"retries", o.Retries}, {"parallel", o.Parallel}, {"budget", o.BudgetRuns}} {
		if n.v < 0 {
			return fmt.Errorf("--%s %d: give 0 or more", n.flag, n.v)
		}
	}
	if !(o.BuildCost >= 0) || math.IsInf(o.BuildCost, 0) {
		return fmt.Errorf("--build-cost %g: give a cost of 0 (measured) or more", o.BuildCost)
	}
	return o.settle()
}

// settle sets the defaults and checks what they leave: for options that
// Validate checked, or that a job directory holds.
func (o *Options) settle() error {
	o.defaults()
	if sp, err := ParseStrategy(o.Strategy); err != nil {
		return fmt.Errorf("--strategy: %w", err)
	} else if sp.SimOnly() {
		return fmt.Errorf("--strategy %s: the simulator's strategy is told the failure rate, which a bisection does not know; use %s", o.Strategy, strings.Join(Strategies, ", "))
	}
	if o.Unit != UnitRuns && o.Unit != UnitTime {
		return fmt.Errorf("--unit %q: use runs or time", o.Unit)
	}
	if o.Parallel > 64 {
		return fmt.Errorf("--parallel %d: give 1 to 64", o.Parallel)
	}
	if _, err := regexp.Compile(o.Signature); err != nil {
		return fmt.Errorf("--signature %q: not a regular expression (%v); give one such as 'natt-esp' or 'corruption, wire decap'", o.Signature, err)
	}
	return nil
}

// durations are Options' durations by JSON key (see jsondur): stored as
// seconds under KEY_s; journals of format version 1 hold nanoseconds
// under KEY, still read.
func (o *Options) durations() []jsondur.Field {
	return []jsondur.Field{{Key: "budget", D: &o.Budget}, {Key: "run_time", D: &o.RunTime}, {Key: "max_run_time", D: &o.MaxRunTime},
		{Key: "timeout", D: &o.Timeout}, {Key: "retry_backoff", D: &o.RetryBackoff}, {Key: "max_time", D: &o.MaxTime}}
}

// MarshalJSON writes the options with their durations in seconds.
func (o Options) MarshalJSON() ([]byte, error) {
	type plain Options
	b, err := json.Marshal(plain(o))
	if err != nil {
		return nil, err
	}
	return jsondur.Add(b, o.durations())
}

// UnmarshalJSON reads the options, durations in seconds (KEY_s) or, from
// a journal of format version 1, nanoseconds (KEY).
func (o *Options) UnmarshalJSON(b []byte) error {
	type plain Options
	if err := json.Unmarshal(b, (*plain)(o)); err != nil {
		return err
	}
	if err := jsondur.Read(b, o.durations()); err != nil {
		return fmt.Errorf("options: %w", err)
	}
	return nil
}

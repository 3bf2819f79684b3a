package testcases

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/kbisect/kbisect/kbuild"
	"github.com/kbisect/kbisect/kconfigs"
)

// MatrixConfig is one kernel config a matrix builds every revision with.
type MatrixConfig struct {
	// Name is the base config (tinyconfig, defconfig, or a file).
	Name      string
	Fragments []*kconfigs.Fragment
}

// Matrix tests revisions of a kernel tree with several configs on several
// hypervisors: which releases build, boot and pass, and how fast. One
// build of a revision and config serves every hypervisor (its fragments
// must make a kernel for all of them).
type Matrix struct {
	// Build is the build template (Repo, Jobs, ...); Rev, Config and
	// Fragments are set per cell.
	Build   kbuild.Options
	Configs []MatrixConfig
	// Hypervisors run each built kernel ("qemu", "xen").
	Hypervisors []string
	// Run is the run template; the kernels and the hypervisor are set per
	// cell, RunDir is the root of the cells' run directories.
	Run Options
	// Exec runs the tests; nil means Local.
	Exec Executor
}

// MatrixCell is one revision, config and hypervisor of a matrix.
type MatrixCell struct {
	Rev        string   `json:"rev"`
	Release    string   `json:"release,omitempty"`
	Config     string   `json:"config"`
	Hypervisor string   `json:"hypervisor,omitempty"`
	Fixups     []string `json:"fixups,omitempty"`
	// BuildSeconds is the build's time (when it was built, not a cache
	// hit: the time it took then).
	BuildSeconds float64 `json:"build_seconds"`
	// Verdict is the run's (or Skip with the reason when the revision does
	// not build with the config).
	Verdict     Verdict `json:"verdict"`
	Reason      string  `json:"reason"`
	Mbit        float64 `json:"throughput_mbit"`
	BootSeconds float64 `json:"boot_seconds"`
	Wire        string  `json:"wire,omitempty"`
	RunDir      string  `json:"run_dir,omitempty"`
}

// Test tests every cell, in order, calling emit with each as it is done;
// done, if set, says which cells an earlier run already has (they are
// skipped). An error is a failure of the host or ctx's end; a revision
// that does not build, or a run that fails, is a cell.
func (m *Matrix) Test(ctx context.Context, revs []string, done func(rev, config, hv string) bool, emit func(MatrixCell)) error {
	for _, rev := range revs {
		for _, mc := range m.Configs {
			todo := false
			for _, hv := range m.Hypervisors {
				todo = todo || done == nil || !done(rev, mc.Name, hv)
			}
			if !todo {
				continue
			}
			ct := &CommitTest{Build: m.Build, Run: m.Run, Exec: m.Exec}
			ct.Build.Config, ct.Build.Fragments = mc.Name, mc.Fragments
			res := ct.BuildCommit(ctx, rev)
			if err := ctx.Err(); err != nil {
				return err
			}
			base := MatrixCell{Rev: rev, Config: mc.Name}
			if a := res.Artifact; a != nil {
				base.Release, base.Fixups, base.BuildSeconds = a.Release, a.Fixups, a.BuildTime().Seconds()
			} else if res.Verdict == Error {
				return fmt.Errorf("%s with %s: %w", rev, mc.Name, res.Err)
			}
			for _, hv := range m.Hypervisors {
				if done != nil && done(rev, mc.Name, hv) {
					continue
				}
				cell := base
				cell.Hypervisor = hv
				if res.Artifact == nil {
					cell.Verdict, cell.Reason = res.Verdict, res.Reason
					emit(cell)
					continue
				}
				ct.Run.Hypervisor = hv
				dir := filepath.Join(m.Run.RunDir, strings.NewReplacer("/", "_", " ", "_").Replace(fmt.Sprintf("%s-%s-%s", rev, filepath.Base(mc.Name), hv)))
				rr := ct.RunKernel(ctx, res.Artifact, m.Run.Duration, dir)
				if err := ctx.Err(); err != nil {
					return err
				}
				cell.Verdict, cell.Reason = rr.Verdict, rr.Reason
				if r := rr.Report; r != nil {
					cell.Mbit, cell.BootSeconds, cell.Wire, cell.RunDir = r.ThroughputMbit, r.BootSeconds, r.Wire.Verdict, r.RunDir
				}
				emit(cell)
			}
		}
	}
	return nil
}

// MatrixLog keeps a matrix's cells: those an earlier run wrote to its
// JSON-lines file, one cell a line, and each new one, appended to the file
// as it is done, so that a matrix cut short goes on where it stopped.
type MatrixLog struct {
	// Cells are the cells read and added, in order.
	Cells []MatrixCell
	have  map[[3]string]bool
	f     *os.File
}

// OpenMatrixLog reads the cells of the file at path (none when it cannot
// be read; lines that are not cells are passed over) and opens it to
// append to, made if need be. With path "" the cells are only kept in
// memory.
func OpenMatrixLog(path string) (*MatrixLog, error) {
	l := &MatrixLog{have: map[[3]string]bool{}}
	if path == "" {
		return l, nil
	}
	if data, err := os.ReadFile(path); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			var c MatrixCell
			if json.Unmarshal(sc.Bytes(), &c) == nil {
				l.Cells = append(l.Cells, c)
				l.have[[3]string{c.Rev, c.Config, c.Hypervisor}] = true
			}
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("matrix cells: %w", err)
	}
	l.f = f
	return l, nil
}

// Done says whether the file had the cell of rev, config and hypervisor
// hv when it was opened (for Matrix.Test).
func (l *MatrixLog) Done(rev, config, hv string) bool { return l.have[[3]string{rev, config, hv}] }

// Add keeps c and appends it to the file. c is kept even when it cannot
// be written.
func (l *MatrixLog) Add(c MatrixCell) error {
	l.Cells = append(l.Cells, c)
	if l.f == nil {
		return nil
	}
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("matrix cell: %w", err)
	}
	if _, err := l.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("matrix cells: %w", err)
	}
	return nil
}

// Close closes the file.
func (l *MatrixLog) Close() error {
	if l.f == nil {
		return nil
	}
	return l.f.Close()
}

// WriteMatrixMarkdown writes cells as a Markdown table: one row per
// revision and config, a column pair per hypervisor.
func WriteMatrixMarkdown(w io.Writer, cells []MatrixCell, hypervisors []string) {
	type key struct{ rev, config string }
	var order []key
	rows := map[key]map[string]MatrixCell{}
	first := map[key]MatrixCell{} // the build's facts are the same in every cell of a row
	for _, c := range cells {
		k := key{c.Rev, c.Config}
		if rows[k] == nil {
			rows[k] = map[string]MatrixCell{}
			order = append(order, k)
			first[k] = c
		}
		rows[k][c.Hypervisor] = c
	}
	fmt.Fprint(w, "| release | config | fixups | build min | ")
	for _, hv := range hypervisors {
		fmt.Fprintf(w, "%s boot s | %s verdict | %s Mbit/s | ", hv, hv, hv)
	}
	fmt.Fprint(w, "\n|---|---|---|---|")
	for range hypervisors {
		fmt.Fprint(w, "---|---|---|")
	}
	fmt.Fprintln(w)
	for _, k := range order {
		row0 := first[k]
		rel := row0.Release
		if rel == "" {
			rel = k.rev
		}
		var short []string
		for _, f := range row0.Fixups {
			short = append(short, strings.SplitN(f, "/", 2)[0])
		}
		fixups := strings.Join(short, " ")
		if fixups == "" {
			fixups = "-"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.1f | ", rel, filepath.Base(k.config), fixups, row0.BuildSeconds/60)
		for _, hv := range hypervisors {
			c, ok := rows[k][hv]
			switch {
			case !ok:
				fmt.Fprint(w, " | | | ")
			case c.Verdict == Pass || c.Verdict == Fail:
				v := string(c.Verdict)
				if c.Wire != "" && c.Wire != "clean" && c.Wire != "unknown" {
					v += " (" + c.Wire + ")"
				}
				fmt.Fprintf(w, "%.1f | %s | %.1f | ", c.BootSeconds, v, c.Mbit)
			default:
				// The reason without the log's path (the cell keeps it):
				// a build failure's first error fits whole.
				reason, _, _ := strings.Cut(c.Reason, " (log: ")
				fmt.Fprintf(w, " | %s: %s | | ", c.Verdict, oneLine(reason, 160))
			}
		}
		fmt.Fprintln(w)
	}
}

func oneLine(s string, n int) string {
	s = strings.ReplaceAll(strings.TrimSpace(s), "\n", " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

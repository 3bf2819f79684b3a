package bisect

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// JournalName is the journal's file name in a job directory.
const JournalName = "journal.jsonl"

// Record types of the journal.
const (
	RecStart     = "start"     // the bisection's Spec; first record
	RecResume    = "resume"    // a process took the job over
	RecBegin     = "begin"     // a run started (a begin without its run was lost in a crash)
	RecRun       = "run"       // a run completed: pass, fail or skip
	RecInfra     = "infra"     // a run could not be done (infrastructure error)
	RecExpand    = "expand"    // a merge was expanded into the commits it brought in
	RecRevert    = "revert"    // a run of bad with the culprit reverted
	RecFinish    = "finish"    // the bisection ended; Result holds the answer
	RecInterrupt = "interrupt" // stopped by a signal; resumable
	RecCancel    = "cancel"    // a run cut short: the search concluded without it
)

// Record is one line of the journal.
type Record struct {
	Type string    `json:"type"`
	Time time.Time `json:"time"`
	// Seq numbers runs (begin, run, infra, revert) from 1, never reused.
	Seq    int    `json:"seq,omitempty"`
	Worker int    `json:"worker,omitempty"`
	Commit string `json:"commit,omitempty"`
	// Budget is what the run was given, in seconds.
	Budget    float64 `json:"budget_s,omitempty"`
	Verdict   Verdict `json:"verdict,omitempty"`
	Elapsed   float64 `json:"elapsed_s,omitempty"`
	Wall      float64 `json:"wall_s,omitempty"`
	Built     bool    `json:"built,omitempty"`
	BuildTime float64 `json:"build_s,omitempty"`
	Signature string  `json:"signature,omitempty"`
	// FailSig is the signature of a failure (Outcome.FailSig); journals
	// written before it have none.
	FailSig  string          `json:"fail_signature,omitempty"`
	Reason   string          `json:"reason,omitempty"`
	Evidence json.RawMessage `json:"evidence,omitempty"`
	Error    string          `json:"error,omitempty"`
	// Expanded are the commits a merge brought in (expand), oldest first.
	Expanded []Commit `json:"expanded,omitempty"`
	Spec     *JobSpec `json:"spec,omitempty"`
	Result   *Result  `json:"result,omitempty"`
	PID      int      `json:"pid,omitempty"`
}

// Journal is the append-only record of a bisection: every line a JSON
// Record, written and fsynced before the bisection acts on it.
type Journal struct {
	f *os.File
}

// OpenJournal opens the journal of dir for appending, creating it.
func OpenJournal(dir string) (*Journal, error) {
	f, err := os.OpenFile(filepath.Join(dir, JournalName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("journal in %s: %w", dir, err)
	}
	// A crash may have left half a line: end it so the next record is
	// whole (ReadJournal skips the broken one).
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if r, err := os.Open(f.Name()); err == nil {
			if _, err := r.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
				f.Write([]byte("\n"))
			}
			r.Close()
		}
	}
	return &Journal{f: f}, nil
}

// ErrStorage marks a failure to write a job directory (a full disk, an
// I/O error): an infrastructure error. The journal is left whole: the job
// can be resumed once the cause is fixed.
var ErrStorage = errors.New("cannot write the job directory")

// Append writes rec as one line and syncs it to disk. A line that cannot
// be written whole is taken back (an error wrapping ErrStorage).
func (j *Journal) Append(rec Record) error {
	if rec.Time.IsZero() {
		rec.Time = time.Now().UTC()
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("journal %s: %w", j.f.Name(), err)
	}
	b = append(b, '\n')
	st, err := j.f.Stat()
	if err != nil {
		return fmt.Errorf("%w: journal %s: %w", ErrStorage, j.f.Name(), err)
	}
	_, err = j.f.Write(b)
	if err == nil {
		err = j.f.Sync()
	}
	if err != nil {
		j.f.Truncate(st.Size())
		return fmt.Errorf("%w: journal %s: %w", ErrStorage, j.f.Name(), err)
	}
	return nil
}

// Close closes the journal.
func (j *Journal) Close() error { return j.f.Close() }

// ReadJournal reads the records of dir's journal. A line that does not
// parse (the last one, cut short by a crash) is skipped.
func ReadJournal(dir string) ([]Record, error) {
	b, err := os.ReadFile(filepath.Join(dir, JournalName))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s is not a kbisect job directory (no %s)", dir, JournalName)
		}
		return nil, fmt.Errorf("journal in %s: %w", dir, err)
	}
	var out []Record
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var r Record
		if err := json.Unmarshal(line, &r); err != nil {
			continue
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("journal in %s: %w", dir, err)
	}
	if len(out) == 0 || out[0].Type != RecStart || out[0].Spec == nil {
		return nil, fmt.Errorf("journal in %s does not start with the bisection's spec: not a kbisect job directory, or corrupt", dir)
	}
	return out, nil
}

// lockName is the lock file of a job directory.
const lockName = "lock"

// Lock is an exclusive hold on a job directory (flock), released when the
// process exits, however it exits.
type Lock struct{ f *os.File }

// ErrLocked is returned by LockJob when another process holds the job.
var ErrLocked = errors.New("job directory in use")

// LockJob takes the job directory dir for this process.
func LockJob(dir string) (*Lock, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock job %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := io.ReadAll(f)
		f.Close()
		who := strings.TrimSpace(string(holder))
		if who == "" {
			who = "another process"
		} else {
			who = "pid " + who
		}
		return nil, fmt.Errorf("job directory %s is in use by another kbisect (%s): %w", dir, who, ErrLocked)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return &Lock{f: f}, nil
}

// Unlock releases the job directory.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	err := l.f.Close()
	l.f = nil
	return err
}

// Locked reports whether some process holds dir's lock.
func Locked(dir string) bool {
	f, err := os.Open(filepath.Join(dir, lockName))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return true
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

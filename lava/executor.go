package lava

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kbisect/kbisect/internal/fsutil"

	"github.com/kbisect/kbisect/testcases"
	"github.com/kbisect/kbisect/testcases/proto"
	"github.com/kbisect/kbisect/vm"
)

// wire is the link a run's guests share: a QEMU multicast socket, which
// joins guests on one worker or on several of one network segment.
type wire struct {
	id     string
	netdev string
	macs   [2]string
}

// newWire draws a multicast group, port and MACs for one run: runs in
// parallel, and other users of the lab's network, do not see each
// other's frames.
func newWire() *wire {
	b := mustHex(randomHex(6))
	w := &wire{id: hex.EncodeToString(b[:4])}
	port := 20000 + int(binary.BigEndian.Uint16(b[4:])&0x7fff)
	w.netdev = fmt.Sprintf("socket,mcast=239.255.%d.%d:%d", b[0], b[1]|1, port)
	for i := range w.macs {
		// Locally administered, unicast.
		w.macs[i] = fmt.Sprintf("52:54:%02x:%02x:%02x:%02x", b[0], b[1], b[2], i+1)
	}
	return w
}

// addressing is where the guests sit on the wire.
func (w *wire) addressing() testcases.Addressing {
	return testcases.Addressing{
		Addr:     [2]string{"198.18.0.1/24", "198.18.0.2/24"},
		PeerView: [2]string{"198.18.0.2", "198.18.0.1"},
		MAC:      w.macs,
	}
}

// Executor runs tests as LAVA MultiNode jobs: it implements
// testcases.Executor.
type Executor struct {
	Client *Client
	// DeviceType is the LAVA device type of the guests ("qemu").
	DeviceType string
	// Publisher makes kernels and initramfs reachable by the workers.
	Publisher Publisher
	// StateDir, if set, returns the directory where the jobs in flight of
	// the run ctx is for are recorded, so that a later process running the
	// same test (a resumed bisection) reattaches to them instead of
	// submitting new ones; "" records nothing.
	StateDir func(ctx context.Context) string
	// Poll is the interval between job status queries (default 3s).
	Poll time.Duration
	// QueueTimeout is how long a job may wait for a device before it is
	// cancelled and the run is an error (default 30m).
	QueueTimeout time.Duration
	// Priority is the jobs' LAVA priority, 0-100 (default 50).
	Priority int
	// Visibility says who may see the jobs: "personal" (the default: the
	// submitter), "public", or "group:NAME[,NAME...]".
	Visibility string
}

// record is a run's jobs in flight, in StateDir.
type record struct {
	Jobs      []int     `json:"jobs"`
	Submitted time.Time `json:"submitted"`
	RunDir    string    `json:"run_dir"`
	PID       int       `json:"pid"`
}

// Run implements testcases.Executor: it turns the run into one MultiNode
// job (a role per guest), waits for it and reads the agents' events from
// the job logs. A job that is not Complete (Incomplete, Canceled, an
// infrastructure error, never started) makes the run an error, never a
// fail; a cancelled ctx cancels the jobs.
func (e *Executor) Run(ctx context.Context, o testcases.Options) (*testcases.Report, error) {
	if o.Topology == "nat" {
		return nil, errors.New("--topology nat is not supported with --executor lava yet: use --topology direct")
	}
	if o.Shell {
		return nil, errors.New("--shell needs a local terminal: not supported with --executor lava")
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	key := e.runKey(o)
	state := ""
	if e.StateDir != nil {
		state = e.StateDir(ctx)
	}
	var rm *testcases.Remote
	var jobs []int
	if rec := e.loadRecord(state, key); rec != nil {
		o.RunDir = rec.RunDir
		var err error
		if rm, err = testcases.ReattachRemote(o); err != nil {
			return nil, err
		}
		jobs = rec.Jobs
		e.progress(&o, "reattached to LAVA jobs %s", joinInts(jobs))
	} else {
		var err error
		wire := newWire()
		rm, err = testcases.PrepareRemote(ctx, o, wire.addressing())
		if err != nil {
			// A kernel that is not one, an initramfs that cannot be
			// made: an infrastructure error, reported like any other.
			rm2, err2 := testcases.ReattachRemote(o)
			if err2 != nil {
				return nil, err2
			}
			return e.errorReport(rm2, nil, start, err), nil
		}
		var remove []func()
		defer func() {
			for _, f := range remove {
				f()
			}
		}()
		name := jobName(&o, wire)
		def, err := e.definition(rm, wire, name, &remove)
		if err != nil {
			return e.errorReport(rm, nil, start, err), nil
		}
		os.WriteFile(filepath.Join(rm.Options.RunDir, "lava-job.yaml"), []byte(def), 0o644)
		ids, err := e.Client.Submit(ctx, def)
		if err != nil {
			return e.errorReport(rm, nil, start, err), nil
		}
		jobs, err = e.resolveJobs(ctx, name, ids)
		if err != nil {
			return e.errorReport(rm, nil, start, err), nil
		}
		e.saveRecord(state, key, &record{Jobs: jobs, Submitted: time.Now(), RunDir: rm.Options.RunDir, PID: os.Getpid()})
		e.progress(&o, "submitted LAVA jobs %s (%s)", joinInts(jobs), e.Client.URL.Redacted())
	}
	r := e.wait(ctx, rm, jobs, start)
	e.dropRecord(state, key)
	return r, nil
}

func (e *Executor) progress(o *testcases.Options, format string, args ...any) {
	if o.Progress != nil {
		o.Progress(fmt.Sprintf(format, args...))
	}
}

// definition publishes the run's files and renders its job.
func (e *Executor) definition(rm *testcases.Remote, w *wire, name string, remove *[]func()) (string, error) {
	o := &rm.Options
	publish := func(f string) (string, error) {
		u, rmf, err := e.Publisher.Publish(f)
		if err != nil {
			return "", err
		}
		*remove = append(*remove, rmf)
		return u, nil
	}
	spec := &jobSpec{
		Name:       name,
		DeviceType: e.DeviceType,
		Test:       o.Duration,
		MemoryMB:   o.MemoryMB,
		Priority:   e.Priority,
		Visibility: e.Visibility,
	}
	for i, role := range testcases.Roles {
		k, err := publish(o.Kernels[i])
		if err != nil {
			return "", err
		}
		initrd, err := publish(rm.Initrds[i])
		if err != nil {
			return "", err
		}
		release := "" // unknown: plain max
		if ki, err := vm.InspectKernel(o.Kernels[i]); err == nil {
			release = ki.Release
		}
		spec.Guests = append(spec.Guests, guestJob{
			Role:    role,
			Kernel:  k,
			Initrd:  initrd,
			Append:  guestAppend(o.Append),
			Network: w.netdev,
			CPU:     vm.TCGCPU(release),
		})
	}
	return spec.definition()
}

// jobName names a run's job: unique, so that its sub-jobs can be found.
func jobName(o *testcases.Options, w *wire) string {
	return fmt.Sprintf("kbisect %s %s %s", o.Test, filepath.Base(o.Kernels[0]), w.id)
}

// resolveJobs finds the jobs LAVA made of the MultiNode job named name
// (unique per run), in role order. Sub-jobs of concurrent submissions may
// interleave their ids, so they are looked up by name and role.
func (e *Executor) resolveJobs(ctx context.Context, name string, ids []string) ([]int, error) {
	n := len(testcases.Roles)
	if len(ids) != n {
		return nil, fmt.Errorf("LAVA made %d jobs (%s) of a %d-role MultiNode job", len(ids), strings.Join(ids, ", "), n)
	}
	jobs, err := e.Client.JobsNamed(ctx, name)
	if err != nil {
		return nil, err
	}
	byRole := make([]int, n)
	for _, j := range jobs {
		for i, role := range testcases.Roles {
			if strings.Contains(j.Definition, "role: "+role+"\n") {
				byRole[i] = j.ID
			}
		}
	}
	for i, id := range byRole {
		if id == 0 {
			return nil, fmt.Errorf("LAVA job %q (%s): no job for the %s role", name, strings.Join(ids, ", "), testcases.Roles[i])
		}
	}
	return byRole, nil
}

// wait follows the jobs until they finish and makes the report.
func (e *Executor) wait(ctx context.Context, rm *testcases.Remote, jobs []int, start time.Time) *testcases.Report {
	poll := e.Poll
	if poll <= 0 {
		poll = 3 * time.Second
	}
	queue := e.QueueTimeout
	if queue <= 0 {
		queue = 30 * time.Minute
	}
	o := &rm.Options
	deadline := time.Now().Add(queue)
	started := false
	states := make([]*Job, len(jobs))
	var why error
	for {
		done := true
		for i, id := range jobs {
			j, err := e.Client.Job(ctx, id)
			var ae *APIError
			if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
				why = err // deleted, or not ours
				break
			}
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				// A server that does not answer: keep trying until the
				// queue deadline (a restarting server is common).
				done = false
				if time.Now().After(deadline) && !started {
					why = err
				}
				continue
			}
			if states[i] == nil || states[i].State != j.State {
				e.progress(o, "LAVA job %d (%s): %s", id, testcases.Roles[i], j.State)
			}
			states[i] = j
			if j.Started() && !started {
				started = true
			}
			if j.State != StateFinished {
				done = false
			}
		}
		if ctx.Err() != nil {
			e.cancel(jobs)
			return e.errorReport(rm, jobs, start, fmt.Errorf("interrupted: %w (LAVA jobs %s cancelled)", ctx.Err(), joinInts(jobs)))
		}
		if why != nil {
			e.cancel(jobs)
			return e.errorReport(rm, jobs, start, why)
		}
		if done {
			break
		}
		if !started && time.Now().After(deadline) {
			e.cancel(jobs)
			return e.errorReport(rm, jobs, start, fmt.Errorf("LAVA jobs %s never started in %v (no free %s device?): cancelled", joinInts(jobs), queue, e.DeviceType))
		}
		select {
		case <-ctx.Done():
		case <-time.After(poll):
		}
	}
	var ends [2]testcases.GuestEnd
	var devices []string
	for i, id := range jobs {
		j := states[i]
		devices = append(devices, j.Device())
		lines, err := e.Client.Logs(ctx, id)
		if err != nil {
			ends[i].Err = err
		}
		var console strings.Builder
		for _, l := range lines {
			if l.Level == "target" || l.Level == "feedback" {
				console.WriteString(consoleText(l.Text()))
				console.WriteByte('\n')
			}
		}
		ends[i].Console = console.String()
		if j.Health != HealthComplete {
			ends[i].Err = e.jobError(ctx, j)
		}
	}
	r := rm.Finish(ctx, ends, time.Since(start).Seconds())
	e.annotate(r, jobs, devices)
	return r
}

// consoleText undoes what LAVA does to a console line before logging it:
// it escapes double quotes (for its YAML log).
func consoleText(s string) string {
	return strings.ReplaceAll(strings.TrimRight(s, "\r"), `\"`, `"`)
}

// jobError explains why a job did not complete: its health, LAVA's error
// type and message.
func (e *Executor) jobError(ctx context.Context, j *Job) error {
	msg := fmt.Sprintf("LAVA job %d %s", j.ID, strings.ToLower(j.Health))
	if !j.Started() {
		msg += " before it started"
	}
	if res, err := e.Client.Results(ctx, j.ID); err == nil {
		for _, t := range res {
			if t.Name == "job" && yamlField(t.Metadata, "definition") == "lava" {
				if et := yamlField(t.Metadata, "error_type"); et != "" {
					msg += ": " + et + " error"
				}
				if em := yamlField(t.Metadata, "error_msg"); em != "" {
					msg += ": " + em
				}
			}
		}
	}
	if c := j.Comment(); c != "" && !strings.Contains(msg, c) {
		msg += " (" + c + ")"
	}
	return errors.New(msg)
}

// yamlField reads a top-level "key: value" of LAVA's result metadata.
func yamlField(meta, key string) string {
	for _, line := range strings.Split(meta, "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.Trim(strings.TrimSpace(v), `'"`)
		}
	}
	return ""
}

// cancel cancels the jobs; it is used when the run is abandoned, so it
// does not depend on the run's context.
func (e *Executor) cancel(jobs []int) {
	ctx, done := context.WithTimeout(context.Background(), 30*time.Second)
	defer done()
	for _, id := range jobs {
		e.Client.Cancel(ctx, id)
	}
}

func (e *Executor) errorReport(rm *testcases.Remote, jobs []int, start time.Time, err error) *testcases.Report {
	r := rm.Report
	r.Verdict, r.Reason = testcases.Error, err.Error()
	r.Seconds = time.Since(start).Seconds()
	e.annotate(r, jobs, nil)
	b, _ := json.MarshalIndent(r, "", "  ")
	fsutil.WriteFile(filepath.Join(rm.Options.RunDir, "report.json"), append(b, '\n'), 0o644)
	return r
}

// annotate says where the run ran: the report's remote section, and the
// job ids in the reason (so that a bisection's report shows them per run).
func (e *Executor) annotate(r *testcases.Report, jobs []int, devices []string) {
	r.Path = "lava-" + e.DeviceType + "/virtio-net+socket-mcast"
	rr := &testcases.RemoteRun{Executor: "lava", URL: e.Client.URL.Redacted(), Devices: devices}
	for _, id := range jobs {
		rr.Jobs = append(rr.Jobs, strconv.Itoa(id))
	}
	r.Remote = rr
	if len(jobs) > 0 {
		r.Reason += " [LAVA jobs " + joinInts(jobs) + "]"
	}
}

// runKey identifies a run for reattaching: the same kernels, modules and
// test options make the same key.
func (e *Executor) runKey(o testcases.Options) string {
	k := struct {
		Kernels, Modules [2]string
		Test, Topology   string
		Crypto, Pattern  string
		Duration         time.Duration
		Streams, MTU     int
		Inject           int64
		InjectSide       string
		Stop, Oops       bool
		Append           string
		URL, DeviceType  string
		// Omitted when fixed: the keys of runs before the option stay.
		WriteSizes string `json:",omitempty"`
	}{o.Kernels, o.Modules, o.Test, o.Topology, o.Crypto, o.Pattern, o.Duration, o.Streams, o.MTU,
		o.InjectOffset, o.InjectSide, o.StopOnFail, o.FailOnOops, o.Append, e.Client.URL.String(), e.DeviceType, o.WriteSizes}
	if k.WriteSizes == proto.WriteSizesFixed {
		k.WriteSizes = ""
	}
	for i, f := range k.Kernels {
		if st, err := os.Stat(f); err == nil {
			k.Kernels[i] = fmt.Sprintf("%s@%d@%d", f, st.Size(), st.ModTime().UnixNano())
		}
	}
	b, _ := json.Marshal(k)
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:12])
}

func recordPath(dir, key string) string {
	return filepath.Join(dir, "lava-"+key+".json")
}

// loadRecord returns the jobs in flight for key that no live process
// follows.
func (e *Executor) loadRecord(dir, key string) *record {
	if dir == "" {
		return nil
	}
	b, err := os.ReadFile(recordPath(dir, key))
	if err != nil {
		return nil
	}
	var rec record
	if json.Unmarshal(b, &rec) != nil || len(rec.Jobs) != len(testcases.Roles) {
		return nil
	}
	if rec.PID == os.Getpid() {
		return nil // followed by this process (another worker)
	}
	rec.PID = os.Getpid()
	if b, err := json.Marshal(rec); err == nil {
		fsutil.WriteFile(recordPath(dir, key), b, 0o644)
	}
	return &rec
}

func (e *Executor) saveRecord(dir, key string, rec *record) {
	if dir == "" {
		return
	}
	os.MkdirAll(dir, 0o755)
	b, _ := json.Marshal(rec)
	fsutil.WriteFile(recordPath(dir, key), b, 0o644)
}

func (e *Executor) dropRecord(dir, key string) {
	if dir != "" {
		os.Remove(recordPath(dir, key))
	}
}

func joinInts(ids []int) string {
	var s []string
	for _, id := range ids {
		s = append(s, strconv.Itoa(id))
	}
	return strings.Join(s, ", ")
}

func mustHex(s string) []byte {
	b, _ := hex.DecodeString(s)
	return b
}

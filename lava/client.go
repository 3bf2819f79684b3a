// Package lava runs kbisect's tests in a LAVA lab (the kernel field's
// distributed test engine: KernelCI, Linaro): one run becomes one MultiNode
// job with a role per guest, the guests joined by QEMU socket networking,
// the agents' console lines read back from the job log. It talks to LAVA's
// REST API (v0.2) with token authentication; nothing of LAVA runs in this
// process.
package lava

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client talks to one LAVA server's REST API v0.2.
type Client struct {
	// URL is the server's base URL, e.g. "https://lava.example.org/".
	URL   *url.URL
	token string
	http  *http.Client
}

// NewClient returns a client of the server at rawURL authenticating with
// an API token (the server's "API tokens" page, or `lava-server manage
// tokens add`).
func NewClient(rawURL, token string) (*Client, error) {
	if rawURL == "" {
		return nil, errors.New("no LAVA server: give --lava-url URL (the server's address, e.g. https://lava.example.org/)")
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("LAVA URL %q: give the server's http(s) address, e.g. https://lava.example.org/", rawURL)
	}
	if u.User != nil {
		// It would be stored with the flags and printed in reports.
		return nil, fmt.Errorf("LAVA URL %s: no user or password in the URL: give the API token with $KBISECT_LAVA_TOKEN or --lava-token", u.Redacted())
	}
	if token == "" {
		return nil, errors.New("no LAVA token: give --lava-token TOKEN or $KBISECT_LAVA_TOKEN (an API token of your LAVA user)")
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/"
	u.Path = strings.TrimSuffix(u.Path, "api/v0.2/")
	return &Client{URL: u, token: token, http: &http.Client{Timeout: 2 * time.Minute}}, nil
}

// APIError is an HTTP error answer of the server.
type APIError struct {
	Method, Path string
	Status       int
	Body         string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("LAVA %s %s: %d %s: %s", e.Method, e.Path, e.Status, http.StatusText(e.Status), oneLine(e.Body, 300))
}

// do sends a request to path (relative to /api/v0.2/) and returns the body.
func (c *Client) do(ctx context.Context, method, path string, body any) ([]byte, error) {
	u := c.URL.JoinPath("api/v0.2", path)
	u.Path += "/"
	u.RawQuery = ""
	if i := strings.IndexByte(path, '?'); i >= 0 {
		u = c.URL.JoinPath("api/v0.2", path[:i])
		u.Path += "/"
		u.RawQuery = path[i+1:]
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Token "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("LAVA server %s: %w", c.URL.Host, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("LAVA %s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return b, &APIError{Method: method, Path: path, Status: resp.StatusCode, Body: string(b)}
	}
	return b, nil
}

// Version returns the server's LAVA version; it also checks the token.
func (c *Client) Version(ctx context.Context) (string, error) {
	b, err := c.do(ctx, "GET", "system/version", nil)
	if err != nil {
		return "", err
	}
	var v struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return "", fmt.Errorf("LAVA version: %w", err)
	}
	// The version is public: ask something that needs the token.
	b, err = c.do(ctx, "GET", "system/whoami", nil)
	if err != nil {
		return v.Version, err
	}
	var who struct {
		User string `json:"user"`
	}
	json.Unmarshal(b, &who)
	if who.User == "" || who.User == "AnonymousUser" {
		return v.Version, fmt.Errorf("LAVA server %s does not accept the token: give a valid --lava-token", c.URL.Host)
	}
	return v.Version, nil
}

// Submit submits a job definition (YAML, or JSON which is YAML) and returns
// the ids of the jobs made from it: one, or one per node of a MultiNode job
// ("12.0", "12.1").
func (c *Client) Submit(ctx context.Context, definition string) ([]string, error) {
	b, err := c.do(ctx, "POST", "jobs", map[string]string{"definition": definition})
	if err != nil {
		return nil, fmt.Errorf("submit job: %w", err)
	}
	var r struct {
		JobIDs []json.RawMessage `json:"job_ids"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("submit job: answer %q: %w", oneLine(string(b), 200), err)
	}
	var ids []string
	for _, raw := range r.JobIDs {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			s = string(raw)
		}
		ids = append(ids, s)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("submit job: no job id in the answer %q", oneLine(string(b), 200))
	}
	return ids, nil
}

// Job states and healths as the REST API spells them.
const (
	StateSubmitted  = "Submitted"
	StateScheduling = "Scheduling"
	StateScheduled  = "Scheduled"
	StateRunning    = "Running"
	StateCanceling  = "Canceling"
	StateFinished   = "Finished"

	HealthUnknown    = "Unknown"
	HealthComplete   = "Complete"
	HealthIncomplete = "Incomplete"
	HealthCanceled   = "Canceled"
)

// Job is a LAVA test job as the REST API describes it.
type Job struct {
	ID             int     `json:"id"`
	State          string  `json:"state"`
	Health         string  `json:"health"`
	ActualDevice   *string `json:"actual_device"`
	SubmitTime     string  `json:"submit_time"`
	StartTime      *string `json:"start_time"`
	EndTime        *string `json:"end_time"`
	FailureComment *string `json:"failure_comment"`
	Definition     string  `json:"definition"`
}

// Device is the device the job ran on, or "".
func (j *Job) Device() string {
	if j.ActualDevice == nil {
		return ""
	}
	return *j.ActualDevice
}

// Comment is the failure comment, or "".
func (j *Job) Comment() string {
	if j.FailureComment == nil {
		return ""
	}
	return *j.FailureComment
}

// Started says whether the job ever ran on a device.
func (j *Job) Started() bool { return j.StartTime != nil && *j.StartTime != "" }

// Job returns the job with the numeric id.
func (c *Client) Job(ctx context.Context, id int) (*Job, error) {
	b, err := c.do(ctx, "GET", "jobs/"+strconv.Itoa(id), nil)
	if err != nil {
		return nil, fmt.Errorf("job %d: %w", id, err)
	}
	var j Job
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("job %d: %w", id, err)
	}
	return &j, nil
}

// JobsNamed returns the jobs whose name (LAVA's description) is name: the
// sub-jobs of one MultiNode submission.
func (c *Client) JobsNamed(ctx context.Context, name string) ([]*Job, error) {
	b, err := c.do(ctx, "GET", "jobs?limit=100&description="+url.QueryEscape(name), nil)
	if err != nil {
		return nil, fmt.Errorf("jobs named %q: %w", name, err)
	}
	var page struct {
		Results []*Job `json:"results"`
	}
	if err := json.Unmarshal(b, &page); err != nil {
		return nil, fmt.Errorf("jobs named %q: %w", name, err)
	}
	return page.Results, nil
}

// Cancel asks the server to cancel the job (a no-op for a finished one).
func (c *Client) Cancel(ctx context.Context, id int) error {
	_, err := c.do(ctx, "GET", "jobs/"+strconv.Itoa(id)+"/cancel", nil)
	if err != nil {
		return fmt.Errorf("cancel job %d: %w", id, err)
	}
	return nil
}

// LogLine is one entry of a job log.
type LogLine struct {
	Time  string `json:"dt"`
	Level string `json:"lvl"`
	// Msg is a string for most levels; results and some debug entries
	// are structured.
	Msg json.RawMessage `json:"msg"`
}

// Text returns the message as text (a structured one as its JSON).
func (l LogLine) Text() string {
	var s string
	if json.Unmarshal(l.Msg, &s) == nil {
		return s
	}
	return string(l.Msg)
}

// Logs returns the job's log. LAVA stores it as YAML, one flow mapping
// per line in JSON syntax, which is what this reads.
func (c *Client) Logs(ctx context.Context, id int) ([]LogLine, error) {
	b, err := c.do(ctx, "GET", "jobs/"+strconv.Itoa(id)+"/logs", nil)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return nil, nil // no log yet
	}
	if err != nil {
		return nil, fmt.Errorf("log of job %d: %w", id, err)
	}
	return parseLog(b), nil
}

// parseLog reads LAVA's YAML log ("- {"dt": ..., "lvl": ..., "msg": ...}"
// per line); lines it cannot read are skipped.
func parseLog(b []byte) []LogLine {
	var out []LogLine
	for _, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if !bytes.HasPrefix(line, []byte("- {")) {
			continue
		}
		var l LogLine
		if json.Unmarshal(line[2:], &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// Result is one test case result of a job.
type Result struct {
	Name   string `json:"name"`
	Result string `json:"result"`
	// Metadata is YAML: definition (the suite's name), case, result,
	// and for the lava suite's job case error_type and error_msg.
	Metadata string `json:"metadata"`
}

// Results returns the job's test case results (the lava suite's job and
// action results, and the monitors').
func (c *Client) Results(ctx context.Context, id int) ([]Result, error) {
	var out []Result
	path := "jobs/" + strconv.Itoa(id) + "/tests"
	for path != "" {
		b, err := c.do(ctx, "GET", path, nil)
		if err != nil {
			return nil, fmt.Errorf("results of job %d: %w", id, err)
		}
		var page struct {
			Next    *string  `json:"next"`
			Results []Result `json:"results"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return nil, fmt.Errorf("results of job %d: %w", id, err)
		}
		out = append(out, page.Results...)
		path = ""
		if page.Next != nil && *page.Next != "" {
			n, err := url.Parse(*page.Next)
			if err != nil {
				break
			}
			path = strings.TrimPrefix(strings.TrimSuffix(n.Path, "/"), c.URL.JoinPath("api/v0.2").Path+"/")
			if n.RawQuery != "" {
				path += "?" + n.RawQuery
			}
		}
	}
	return out, nil
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

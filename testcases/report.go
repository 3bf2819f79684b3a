package testcases

import (
	"encoding/json"
	"time"

	"github.com/kbisect/kbisect/internal/version"
	"github.com/kbisect/kbisect/testcases/esp"
	"github.com/kbisect/kbisect/testcases/proto"
)

// Verdict is what a run, or the test of a commit, showed.
type Verdict string

// Verdicts. Error means the infrastructure failed (boot, timeout, host
// fault): it says nothing about the bug and is never Fail. Skip is the
// verdict of a commit that cannot be tested (it does not build with the
// config, or its kernel panics): a run's report is never Skip.
const (
	Pass  Verdict = "pass"
	Fail  Verdict = "fail"
	Skip  Verdict = "skip"
	Error Verdict = "error"
)

// Report is the outcome of one run, as `kbisect run --json` prints it.
type Report struct {
	// Kbisect is the version and commit of the kbisect that ran it.
	Kbisect string  `json:"kbisect"`
	Verdict Verdict `json:"verdict"`
	Reason  string  `json:"reason"`
	Test    string  `json:"test"`
	// BytesVerified counts the payload bytes the receiver checked.
	BytesVerified int64              `json:"bytes_verified"`
	BytesSent     int64              `json:"bytes_sent"`
	Corruptions   []proto.Corruption `json:"corruptions"`
	// ThroughputMbit is the receiver's goodput over the whole test.
	ThroughputMbit float64 `json:"throughput_mbit"`
	// BootSeconds is the later of the two guests' uptime when their agent
	// was ready; BootWallSeconds the host's time from launch to both ready.
	BootSeconds     float64 `json:"boot_seconds"`
	BootWallSeconds float64 `json:"boot_wall_seconds"`
	TestSeconds     float64 `json:"test_seconds"`
	Wire            Wire    `json:"wire"`
	Topology        string  `json:"topology"`
	Crypto          string  `json:"crypto,omitempty"`
	// Path says which hypervisor and network path carried the traffic,
	// e.g. "qemu-tcg/virtio-net".
	Path    string         `json:"path"`
	Guests  [2]GuestReport `json:"guests"`
	Pcaps   []string       `json:"pcaps,omitempty"`
	Keys    string         `json:"keys,omitempty"`
	ESPSA   string         `json:"esp_sa,omitempty"`
	RunDir  string         `json:"run_dir"`
	Seconds float64        `json:"seconds"`
	// Remote says where a run that did not boot its guests here ran.
	Remote *RemoteRun `json:"remote,omitempty"`

	// XenConsole is the serial console of the nested Xen host (Xen, dom0
	// and its controller), for runs under Xen.
	XenConsole string `json:"xen_console,omitempty"`
	// XenCPU is the nested Xen machine's CPU model (what the domUs' SIMD
	// flags come from).
	XenCPU string `json:"xen_cpu,omitempty"`

	// captureComplete is set when the wire closed after both guests had
	// stopped and its captures hold every frame that crossed it.
	captureComplete bool
}

// RemoteRun identifies a run done by a remote executor.
type RemoteRun struct {
	// Executor is "lava".
	Executor string `json:"executor"`
	// URL is the server; Jobs its job ids (one per guest) and Devices the
	// devices they ran on, in guest order.
	URL     string   `json:"url"`
	Jobs    []string `json:"jobs"`
	Devices []string `json:"devices,omitempty"`
}

// GuestReport is what one guest of the pair reported and how it ended.
type GuestReport struct {
	Role          string   `json:"role"`
	Kernel        string   `json:"kernel"`
	KernelRelease string   `json:"kernel_release,omitempty"`
	Console       string   `json:"console"`
	BootSeconds   float64  `json:"boot_seconds"`
	Outcome       string   `json:"outcome"`
	Error         string   `json:"error,omitempty"`
	XfrmState     []string `json:"xfrm_state,omitempty"`
	// SIMD and CryptoDrivers are the agent's proto.Result fields: the
	// SIMD flags the guest kernel saw and the crypto implementations it
	// ran the SAs with.
	SIMD          []string `json:"simd,omitempty"`
	CryptoDrivers []string `json:"crypto_drivers,omitempty"`
	// AuthFailures counts the ESP packets this guest's kernel dropped
	// because their ICV did not verify.
	AuthFailures int64 `json:"auth_failures"`
	// SIMDCanary is what the SIMD canary thread saw (--simd-canary).
	SIMDCanary *proto.SIMDCanary `json:"simd_canary,omitempty"`
	// TCP is the sender's TCP_INFO of each stream when it stopped sending.
	TCP    []proto.TCPStat `json:"tcp,omitempty"`
	Oopses []string        `json:"oopses,omitempty"`
}

// setResult copies what the guest's agent reported about its kernel.
func (g *GuestReport) setResult(res *proto.Result) {
	if res == nil {
		return
	}
	g.KernelRelease = res.KernelRelease
	g.XfrmState = res.XfrmState
	g.SIMD = res.SIMD
	g.CryptoDrivers = res.CryptoDrivers
	g.AuthFailures = res.AuthFailures
	g.SIMDCanary = res.SIMDCanary
	g.TCP = res.TCP
}

// Wire is the verdict of the capture analysis.
type Wire struct {
	// Verdict is clean, encap, decap, nat or unknown.
	Verdict string `json:"verdict"`
	Detail  string `json:"detail,omitempty"`
	// Missing says what the capture lacks for a definite verdict.
	Missing []string `json:"missing,omitempty"`
	Packets int64    `json:"packets"`
	ESP     int64    `json:"esp_packets"`
	// ESPPerSecond, Sizes and DistinctSizes say what the run tested per
	// second: ESP packets, and their size mix (see esp.Report).
	ESPPerSecond  float64         `json:"esp_packets_per_second,omitempty"`
	Sizes         []esp.SizeCount `json:"esp_sizes,omitempty"`
	DistinctSizes int             `json:"esp_distinct_sizes,omitempty"`
	// BytesVerified counts stream bytes checked on the wire.
	BytesVerified  int64 `json:"bytes_verified"`
	ICVFailures    int64 `json:"icv_failures"`
	Corruptions    int   `json:"corruptions"`
	ChecksumErrors int64 `json:"checksum_errors"`
	Undecryptable  int64 `json:"undecryptable"`
	// CipherBlockTexts are the wire corruptions' ciphertext blocks that
	// read as text (esp.WireCorruption.CipherBlockText), each once.
	CipherBlockTexts []string `json:"cipher_block_texts,omitempty"`
}

// ExposureMbit is the throughput that turns a run's traffic into exposure
// (see Report.Exposure): a run that checked one minute of traffic at this
// rate counts one minute.
const ExposureMbit = 20

// Exposure is how much the run exposed the kernels to the bug: the bytes
// the receiver checked (up to the first corruption when the run stopped
// there), as minutes of traffic at ExposureMbit. The corruption this test
// looks for comes with the packets pushed through the buggy path, not with
// the wall time, which a loaded machine, nested Xen or a slow kernel
// stretches tenfold: counted in time, a slow run would look like more
// evidence than it is.
func (r *Report) Exposure() time.Duration {
	const bytesPerMinute = ExposureMbit * 1e6 / 8 * 60
	b := max(r.BytesVerified, 1500) // a corruption in the first packet
	return time.Duration(float64(b) / bytesPerMinute * float64(time.Minute))
}

// KernelPanicked says whether a guest's kernel panicked: for an error
// report, a property of the kernel under test (a bisection skips such a
// commit) rather than of the host.
func (r *Report) KernelPanicked() bool {
	for _, g := range r.Guests {
		if g.Outcome == "panic" {
			return true
		}
	}
	return false
}

// newReport starts the report of a run.
func newReport(o *Options) *Report {
	return &Report{Kbisect: version.String(), Test: o.Test, Topology: o.Topology, RunDir: abs(o.RunDir)}
}

// MarshalJSON writes no corruptions as [], never null: a list a script
// can take the length of.
func (r Report) MarshalJSON() ([]byte, error) {
	type plain Report
	if r.Corruptions == nil {
		r.Corruptions = []proto.Corruption{}
	}
	return json.Marshal(plain(r))
}

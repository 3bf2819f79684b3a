// Package proto is the contract between the host side of a testcase and the
// guest agent: the parameters the host hands to each guest, the events and the
// result the agent sends back, the crypto suites and the byte patterns both
// sides must agree on. It is imported by the agent, so it stays small and has
// no dependencies beyond the standard library.
package proto

import (
	"encoding/json"
	"fmt"
	"time"
)

// ParamsPath is where the agent finds its Params inside the initramfs.
const ParamsPath = "/kbisect/params.json"

// EventPrefix starts every line the agent writes on its result channel (and
// mirrors on the console), so a reader that only sees the console (LAVA's
// monitors, a Xen console) can find them among kernel messages.
const EventPrefix = "KBISECT-EVENT "

// Roles of the two guests.
const (
	RoleSender   = "sender"
	RoleReceiver = "receiver"
)

// Write sizes of the sender (Params.WriteSizes).
const (
	// WriteSizesFixed writes PatternBlock bytes at a time, as dd | nc does:
	// TCP cuts the stream into full segments.
	WriteSizesFixed = "fixed"
	// WriteSizesVary draws each write's size from 1 byte to PatternBlock
	// (log-uniform) and ends each write with MSG_EOR, so that TCP (Linux
	// 4.7 and later) appends no later write to its last segment: the
	// sizes reach the wire as segments of as many lengths, with as many
	// ESP pad lengths and trailer positions.
	WriteSizesVary = "vary"
)

// Injection sides for the self-test hooks.
const (
	// InjectReceiver corrupts the received byte after decryption, before
	// checking: a decapsulation-like corruption, invisible on the wire.
	InjectReceiver = "receiver"
	// InjectSender corrupts the byte in the sender's plaintext before it is
	// encrypted: an encapsulation-like corruption, visible on the wire.
	InjectSender = "sender"
	// InjectAuth makes the sender send, once its stream 0 has passed the
	// offset, one forged ESP packet of its outbound SA whose ICV cannot
	// verify: the receiver's kernel drops it (an authentication failure,
	// no corrupted byte), as it drops the packets a broken ESP output path
	// damaged after authenticating them.
	InjectAuth = "auth"
)

// Duration is a time.Duration that marshals as a Go duration string.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// Params is what the host tells one guest agent to do.
type Params struct {
	Role string `json:"role"`
	// Test is the guest-side testcase name ("natt-esp", "tcp").
	Test string `json:"test"`
	// Addr is this guest's address with prefix length, e.g. "10.0.1.2/24".
	Addr string `json:"addr"`
	// Gateway is the default route, empty on a direct link.
	Gateway string `json:"gateway,omitempty"`
	// Peer is the address the sender connects to (the receiver's address).
	Peer string `json:"peer"`
	// MAC, if set, replaces the interface's hardware address before it is
	// brought up: for labs whose device templates give every guest the
	// same one (LAVA's qemu).
	MAC string `json:"mac,omitempty"`
	// MTU of the guest's interface; 0 keeps the driver's default.
	MTU int `json:"mtu,omitempty"`
	// Streams is the number of parallel TCP streams.
	Streams int `json:"streams"`
	// Duration is how long the sender sends.
	Duration Duration `json:"duration"`
	// Pattern is the payload: "zero" (as in the seed report) or "prng".
	Pattern string `json:"pattern"`
	// Seed makes "prng" streams differ between runs.
	Seed uint64 `json:"seed"`
	// WriteSizes is how the sender writes: WriteSizesFixed (empty) or
	// WriteSizesVary.
	WriteSizes string `json:"write_sizes,omitempty"`
	// ESP, when set, is the SA pair to install (natt-esp).
	ESP *ESPConfig `json:"esp,omitempty"`
	// InjectOffset, when >= 0, is the stream-0 byte offset the self-test
	// corrupts on InjectSide.
	InjectOffset int64  `json:"inject_offset"`
	InjectSide   string `json:"inject_side,omitempty"`
	// StopOnFail ends the test at the first corruption (a bisection needs
	// only one).
	StopOnFail bool `json:"stop_on_fail,omitempty"`
	// Modules are initramfs paths of kernel modules to load, in order.
	Modules []string `json:"modules,omitempty"`
	// Shell starts a shell on the console at the end instead of powering off.
	Shell bool `json:"shell,omitempty"`
	// SIMDCanary runs a thread that holds known values in the SIMD
	// registers during the test and reports when they change under it.
	SIMDCanary bool `json:"simd_canary,omitempty"`
	// Channel is the device the agent writes its events to; empty means
	// DefaultChannel. Events of type ready, result and error are mirrored on
	// the console.
	Channel string `json:"channel,omitempty"`
}

// DefaultChannel is the agent's result channel: the second 16550 UART, which
// every x86 kernel since 2.6 drives without modules.
const DefaultChannel = "/dev/ttyS1"

// ChannelConsole as Params.Channel makes the agent write every event on the
// console only: for guests whose only link to the host is their console
// (Xen domUs, whose hvc0 dom0 relays).
const ChannelConsole = "console"

// ESPConfig describes the ESP-in-UDP (NAT-T) transport-mode SAs of one guest.
type ESPConfig struct {
	Suite string `json:"suite"`
	// Out protects what this guest sends, In what it receives.
	Out SA `json:"out"`
	In  SA `json:"in"`
	// LegacyAuth asks for XFRMA_ALG_AUTH (default truncation) instead of
	// XFRMA_ALG_AUTH_TRUNC, for kernels that do not know the latter.
	LegacyAuth bool `json:"legacy_auth,omitempty"`
}

// SA is one ESP security association as seen on the wire. Src and Dst are the
// addresses of the outer (and, in transport mode, only) IP header as the
// guest that owns the SA sees them. A zero port is learned by the agent from
// the peer's hello (the NAT chose it).
type SA struct {
	SPI     uint32   `json:"spi"`
	Src     string   `json:"src"`
	Dst     string   `json:"dst"`
	SrcPort uint16   `json:"sport"`
	DstPort uint16   `json:"dport"`
	EncKey  HexBytes `json:"enc_key,omitempty"`
	AuthKey HexBytes `json:"auth_key,omitempty"`
}

// HexBytes marshals as a hex string.
type HexBytes []byte

// MarshalJSON implements json.Marshaler.
func (h HexBytes) MarshalJSON() ([]byte, error) { return json.Marshal(fmt.Sprintf("%x", []byte(h))) }

// UnmarshalJSON implements json.Unmarshaler.
func (h *HexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	var out []byte
	if _, err := fmt.Sscanf(s, "%x", &out); err != nil && s != "" {
		return fmt.Errorf("hex %q: %w", s, err)
	}
	*h = out
	return nil
}

// Suite is one ESP algorithm combination, named as on the command line.
type Suite struct {
	Name string
	// Enc is the kernel's name for the cipher ("cbc(aes)", "ecb(cipher_null)"),
	// or the AEAD ("rfc4106(gcm(aes))") when AEAD is true.
	Enc    string
	EncKey int // bytes, including the 4-byte salt for rfc4106
	AEAD   bool
	// Auth is the kernel's name of the integrity algorithm, empty for AEAD.
	Auth     string
	AuthKey  int // bytes
	ICVBits  int // truncated ICV length on the wire
	IVLen    int // bytes of IV on the wire
	BlockLen int // cipher block size for padding
}

// Suites lists the supported crypto suites by name.
var Suites = map[string]Suite{
	"cbc-aes-sha1":   {Name: "cbc-aes-sha1", Enc: "cbc(aes)", EncKey: 16, Auth: "hmac(sha1)", AuthKey: 20, ICVBits: 96, IVLen: 16, BlockLen: 16},
	"cbc-aes-sha256": {Name: "cbc-aes-sha256", Enc: "cbc(aes)", EncKey: 16, Auth: "hmac(sha256)", AuthKey: 32, ICVBits: 128, IVLen: 16, BlockLen: 16},
	"gcm-aes":        {Name: "gcm-aes", Enc: "rfc4106(gcm(aes))", EncKey: 20, AEAD: true, ICVBits: 128, IVLen: 8, BlockLen: 4},
	"null-sha1":      {Name: "null-sha1", Enc: "ecb(cipher_null)", EncKey: 0, Auth: "hmac(sha1)", AuthKey: 20, ICVBits: 96, IVLen: 0, BlockLen: 4},
}

// Event is one line on the result channel: EventPrefix followed by its JSON.
type Event struct {
	// Type is "ready" (network and SAs up), "progress", "result" or "error".
	Type string `json:"type"`
	Role string `json:"role,omitempty"`
	// Uptime is the guest's uptime in seconds when the event was written.
	Uptime  float64 `json:"uptime"`
	Message string  `json:"message,omitempty"`
	// Bytes is the running byte count for "progress".
	Bytes  int64   `json:"bytes,omitempty"`
	Result *Result `json:"result,omitempty"`
}

// Result is what one agent found.
type Result struct {
	Role          string `json:"role"`
	KernelRelease string `json:"kernel_release"`
	// BytesSent (sender) and BytesVerified (receiver) count payload bytes.
	BytesSent     int64        `json:"bytes_sent"`
	BytesVerified int64        `json:"bytes_verified"`
	Corruptions   []Corruption `json:"corruptions"`
	// CorruptionsDropped counts corruptions beyond the reported ones.
	CorruptionsDropped int     `json:"corruptions_dropped,omitempty"`
	Seconds            float64 `json:"seconds"`
	ThroughputMbit     float64 `json:"throughput_mbit"`
	Streams            int     `json:"streams"`
	// XfrmState is the kernel's view of the installed SAs (as `ip xfrm
	// state` would print them), to verify that what was asked is what runs.
	XfrmState []string `json:"xfrm_state,omitempty"`
	// ESPPackets counts ESP packets the kernel processed (from the SA stats).
	ESPPackets int64 `json:"esp_packets,omitempty"`
	// AuthFailures counts the ESP packets this guest's kernel dropped
	// because their ICV did not verify (the inbound SA's integrity_failed):
	// the peer's output path (or the wire) damaged them, and TCP resent
	// the data.
	AuthFailures int64 `json:"auth_failures,omitempty"`
	// SIMD lists the CPU's SIMD and FPU-management flags as the guest
	// kernel sees them (/proc/cpuinfo), CryptoDrivers the implementations
	// its crypto picked for the test's algorithms ("name = driver", from
	// /proc/crypto).
	SIMD          []string `json:"simd,omitempty"`
	CryptoDrivers []string `json:"crypto_drivers,omitempty"`
	// SIMDCanary is the canary thread's finding (Params.SIMDCanary).
	SIMDCanary *SIMDCanary `json:"simd_canary,omitempty"`
	// TCP is the sender's view of each stream's connection when it stopped
	// sending (TCP_INFO): what held the throughput back.
	TCP []TCPStat `json:"tcp,omitempty"`
}

// TCPStat is one connection's TCP_INFO, in milliseconds and segments.
type TCPStat struct {
	Stream       int     `json:"stream"`
	RTTms        float64 `json:"rtt_ms"`
	RTTVarms     float64 `json:"rttvar_ms"`
	RTOms        float64 `json:"rto_ms"`
	Cwnd         uint32  `json:"cwnd"`
	Ssthresh     uint32  `json:"ssthresh"`
	TotalRetrans uint32  `json:"total_retrans"`
}

// SIMDCanary is what the SIMD canary thread saw: Checks checks of 15
// registers over Seconds, Clobbered of them found a register changed.
type SIMDCanary struct {
	Checks    int64         `json:"checks"`
	Clobbered int           `json:"clobbered"`
	Seconds   float64       `json:"seconds"`
	Samples   []SIMDClobber `json:"samples,omitempty"`
}

// SIMDClobber is one register found changed.
type SIMDClobber struct {
	Register int      `json:"register"`
	Expected HexBytes `json:"expected"`
	Seen     HexBytes `json:"seen"`
	// Seconds since the canary started.
	Seconds float64 `json:"seconds"`
}

// Corruption is one run of wrong bytes in a stream.
type Corruption struct {
	Stream   int      `json:"stream"`
	Offset   int64    `json:"offset"`
	Length   int      `json:"length"`
	Expected HexBytes `json:"expected"`
	Seen     HexBytes `json:"seen"`
	// Side is where it was seen: "receiver" (the application), or for the
	// wire analysis "wire".
	Side string `json:"side"`
}

// MaxReportedCorruptions bounds the corruptions one agent reports in detail.
const MaxReportedCorruptions = 64

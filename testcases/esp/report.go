package esp

import "github.com/kbisect/kbisect/testcases/proto"

// Wire verdicts.
const (
	// WireClean: every byte of every stream was on the wire, authenticated,
	// and as expected.
	WireClean = "clean"
	// WireEncap: a packet with a valid ICV carried corrupted payload: the
	// sender's output path (at or before encryption) corrupted it.
	WireEncap = "encap"
	// WireDecap: the wire carried the right bytes where the receiver saw
	// wrong ones: the receiver's input path (decryption and after). Only
	// Classify gives it, since it needs the receiver's findings.
	WireDecap = "decap"
	// WireNAT: packets changed between the two capture points.
	WireNAT = "nat"
	// WireUnknown: the capture is not enough to say (Report.Missing says why).
	WireUnknown = "unknown"
)

// Capture sides.
const (
	SideSender   = "sender"   // upstream of the NAT, next to the sender
	SideReceiver = "receiver" // downstream of the NAT, next to the receiver
	SideDirect   = "direct"   // the only capture, on a direct link
)

// Report is the wire analysis of one run's capture(s).
type Report struct {
	// Wire is the verdict: clean, encap, nat or unknown (decap needs the
	// receiver's findings: see Classify).
	Wire string `json:"verdict"`
	// Reason says in one sentence why.
	Reason string `json:"detail"`
	// Missing lists what the capture lacks for a clean verdict (why the
	// verdict is unknown, or what limits an encap or nat verdict).
	Missing []string `json:"missing,omitempty"`
	// Notes are findings that do not change the verdict.
	Notes []string `json:"notes,omitempty"`

	// ReceiverInside repeats AnalyzeOptions.ReceiverInside.
	ReceiverInside bool `json:"receiver_inside,omitempty"`

	// PatternMismatch is set when the streams' bytes mostly differ from the
	// keys' pattern: the keys are another run's, and nothing can be said.
	PatternMismatch bool `json:"pattern_mismatch,omitempty"`

	// Totals over all captures.
	Packets    int64 `json:"packets"`
	ESPPackets int64 `json:"esp_packets"`
	// ESPPerSecond, SizeMix and DistinctSizes are those of the capture
	// that saw the most ESP packets (see CaptureReport): what the test
	// pushed through the ESP paths per second, and in what sizes.
	ESPPerSecond  float64     `json:"esp_packets_per_second,omitempty"`
	SizeMix       []SizeCount `json:"esp_sizes,omitempty"`
	DistinctSizes int         `json:"esp_distinct_sizes,omitempty"`
	// BytesVerified counts distinct stream bytes compared with the pattern
	// in at least one capture.
	BytesVerified    int64 `json:"bytes_verified"`
	ICVFailures      int64 `json:"icv_failures"`
	ChecksumFailures int64 `json:"checksum_errors"`
	// ESPMissing counts sequence numbers of the data SAs that no capture
	// saw; Undecryptable those seen but never authenticated.
	ESPMissing    int64 `json:"esp_missing"`
	Undecryptable int64 `json:"undecryptable"`

	// Corruptions on the wire, in capture order (at most the first
	// AnalyzeOptions.MaxCorruptions in detail).
	Corruptions        []WireCorruption `json:"corruptions,omitempty"`
	CorruptionsDropped int              `json:"corruptions_dropped,omitempty"`

	// Streams merges what all captures saw of each test connection.
	Streams []StreamReport `json:"streams"`
	// Captures has each capture file's own counts.
	Captures []CaptureReport `json:"captures"`
	// Compare, with two captures, matches their ESP packets.
	Compare *Comparison `json:"compare,omitempty"`
}

// WireCorruption is a run of wrong payload bytes in an authenticated ESP
// packet: proto.Corruption with Side "wire", plus where to find it.
type WireCorruption struct {
	proto.Corruption
	// Capture indexes Report.Captures; Frame is the 1-based packet number
	// in that file, as Wireshark numbers it.
	Capture int    `json:"capture"`
	Frame   int64  `json:"frame"`
	SPI     uint32 `json:"spi"`
	ESPSeq  uint32 `json:"esp_seq"`
	// TCPChecksum is "ok" (corrupted before the sender's TCP checksummed
	// it, e.g. in the application or while copying from user space), "bad"
	// (corrupted after: in the stack or during encryption), or
	// "unverifiable" (pseudo-header addresses unknown).
	TCPChecksum string `json:"tcp_checksum"`
	// Retransmission is set when other copies of these bytes were seen
	// before.
	Retransmission bool `json:"retransmission,omitempty"`
	// OffsetExact is false when the stream's SYN was not captured and the
	// offset was inferred from the pattern (exact modulo 64 KiB).
	OffsetExact bool `json:"offset_exact"`
	// CipherBlock is, for a CBC suite, the ciphertext block on the wire
	// that decrypted to the first wrong byte; CipherBlockText is that block
	// when it reads as text (a register of the encrypting code loaded from
	// another context's memory, say).
	CipherBlock     proto.HexBytes `json:"cipher_block,omitempty"`
	CipherBlockText string         `json:"cipher_block_text,omitempty"`
}

// StreamReport is what was seen of one test connection.
type StreamReport struct {
	Stream     int    `json:"stream"`
	SenderPort uint16 `json:"sender_port"`
	// SYN, FIN and RST say whether the connection's start and end were seen.
	SYN bool `json:"syn"`
	FIN bool `json:"fin"`
	RST bool `json:"rst,omitempty"`
	// OffsetsExact is false when offsets were inferred without a SYN.
	OffsetsExact bool `json:"offsets_exact"`
	// End is the stream length seen: the FIN's offset, or one past the
	// highest byte seen.
	End int64 `json:"end"`
	// Verified counts distinct bytes compared with the pattern.
	Verified int64 `json:"verified"`
	// Gaps are the holes in [0, End) no capture saw (at most 64 listed);
	// GapBytes is their total size.
	Gaps     []Range `json:"gaps,omitempty"`
	GapBytes int64   `json:"gap_bytes,omitempty"`
	// Corrupt are the byte ranges where some authenticated copy differed
	// from the pattern.
	Corrupt          []Range `json:"corrupt,omitempty"`
	CorruptTruncated bool    `json:"corrupt_truncated,omitempty"`

	Segments         int64 `json:"segments"`
	Retransmitted    int64 `json:"retransmitted_bytes"`
	OutOfOrder       int64 `json:"out_of_order"`
	CopiesDiffer     int64 `json:"copies_differ,omitempty"`
	ChecksumFailures int64 `json:"checksum_errors,omitempty"`
	// Unaligned counts payload bytes seen before the offsets could be
	// inferred (no SYN), which were not verified.
	Unaligned int64 `json:"unaligned_bytes,omitempty"`
}

// CaptureReport counts what one capture file held.
type CaptureReport struct {
	Path string `json:"path"`
	// Side is sender, receiver or direct.
	Side     string `json:"side"`
	LinkType string `json:"link_type"`
	// FileBytes is the file's size.
	FileBytes int64 `json:"file_bytes"`
	Packets   int64 `json:"packets"`
	// Truncated is set when the file ends inside a packet (the capture was
	// killed) or is damaged; TruncatedReason says how.
	Truncated       bool   `json:"truncated,omitempty"`
	TruncatedReason string `json:"truncated_reason,omitempty"`
	// Dropped is the number of packets the capturing tool says it dropped
	// (pcapng interface statistics; pcap files do not record it).
	Dropped int64 `json:"dropped,omitempty"`
	// Snapped counts IPv4 packets cut short by the snap length.
	Snapped   int64 `json:"snapped,omitempty"`
	Fragments int64 `json:"ip_fragments,omitempty"`
	IPv6      int64 `json:"ipv6,omitempty"`
	NotIP     int64 `json:"not_ip,omitempty"`
	OtherIP   int64 `json:"other_ip,omitempty"`
	Malformed int64 `json:"malformed,omitempty"`

	Keepalives int64 `json:"nat_keepalives,omitempty"`
	NonESP     int64 `json:"non_esp_marker,omitempty"`
	// ESPPackets counts ESP packets of the keys' SAs; UnknownSPI others.
	ESPPackets int64 `json:"esp_packets"`
	UnknownSPI int64 `json:"unknown_spi,omitempty"`
	// ESPSeconds is the time from the first ESP packet of the keys' SAs
	// to the last, ESPPerSecond their rate over it; SizeMix counts them
	// by ESP size (SPI to ICV) and DistinctSizes counts the sizes seen.
	ESPSeconds    float64     `json:"esp_seconds,omitempty"`
	ESPPerSecond  float64     `json:"esp_packets_per_second,omitempty"`
	SizeMix       []SizeCount `json:"esp_sizes,omitempty"`
	DistinctSizes int         `json:"esp_distinct_sizes,omitempty"`
	Duplicates    int64       `json:"duplicates,omitempty"`
	ICVFailures   int64       `json:"icv_failures"`
	// BadESP counts authenticated packets whose ESP structure is wrong
	// (ciphertext length, pad length); BadPadding those whose padding bytes
	// are not 1, 2, 3, ...
	BadESP     int64 `json:"bad_esp,omitempty"`
	BadPadding int64 `json:"bad_padding,omitempty"`
	NotTCP     int64 `json:"not_tcp,omitempty"`

	TCPSegments      int64 `json:"tcp_segments"`
	ChecksumFailures int64 `json:"checksum_errors"`
	// ChecksumUnverifiable counts segments of connections whose checksums
	// never matched any known pseudo-header but agree among themselves
	// (the keys lack the NAT's address).
	ChecksumUnverifiable int64 `json:"checksum_unverifiable,omitempty"`
	PayloadBytes         int64 `json:"payload_bytes"`
	BytesVerified        int64 `json:"bytes_verified"`
	Corruptions          int   `json:"corruptions"`
	// OtherTCP counts ESP-protected TCP segments of other connections;
	// ReverseData payload bytes the receiver sent on a test connection.
	OtherTCP    int64 `json:"other_tcp,omitempty"`
	ReverseData int64 `json:"reverse_data,omitempty"`
	// OutOfWindow counts data segments whose sequence number is far from
	// the stream's (not verified).
	OutOfWindow int64 `json:"out_of_window,omitempty"`

	SAs     []SAReport     `json:"sas"`
	Streams []StreamReport `json:"streams"`
}

// SAReport counts one SA's packets in one capture.
type SAReport struct {
	SPI uint32 `json:"spi"`
	// Direction is "sender to receiver", "receiver to sender", or "" when no
	// packet of it decrypted to a test stream's segment.
	Direction   string `json:"direction,omitempty"`
	Packets     int64  `json:"packets"`
	ICVFailures int64  `json:"icv_failures"`
	// FirstSeq and LastSeq bound the authenticated sequence numbers;
	// Missing counts the numbers between them this capture did not see.
	FirstSeq uint32 `json:"first_seq,omitempty"`
	LastSeq  uint32 `json:"last_seq,omitempty"`
	Missing  int64  `json:"missing"`
}

// Comparison matches the ESP packets of two captures by SA and sequence
// number.
type Comparison struct {
	// Same counts packets identical at both points; Changed those that
	// differ (authenticated at one point and not at the other).
	Same    int64 `json:"same"`
	Changed int64 `json:"changed"`
	// OnlyFirst and OnlySecond count packets one capture lacks: lost
	// between the points (the NAT dropped them) or missed by a capture.
	OnlyFirst  int64 `json:"only_first"`
	OnlySecond int64 `json:"only_second"`
	// Examples lists up to 16 changed packets.
	Examples []Change `json:"examples,omitempty"`
}

// Change is one ESP packet that differs between the capture points.
type Change struct {
	SPI    uint32 `json:"spi"`
	ESPSeq uint32 `json:"esp_seq"`
	// Frames in the first and second capture.
	Frames [2]int64 `json:"frames"`
	What   string   `json:"what"`
}

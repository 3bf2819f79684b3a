package esp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/kbisect/kbisect/internal/fsutil"
	"github.com/kbisect/kbisect/testcases/proto"
)

// DefaultBasePort is the receiver's TCP port of stream 0; stream i listens
// on DefaultBasePort+i.
const DefaultBasePort = 5001

// Keys is everything the wire analysis needs to know about one run: the
// crypto suite and SAs to decrypt the capture, and the pattern to predict
// every stream byte. `kbisect run` saves it next to the pcap (see
// KeysPathFor).
type Keys struct {
	// Suite names a proto.Suites entry ("cbc-aes-sha1", ...).
	Suite string `json:"suite"`
	// ICVBits overrides the suite's ICV length on the wire; 0 keeps the
	// suite's. Kernels without XFRMA_ALG_AUTH_TRUNC (proto.ESPConfig's
	// LegacyAuth) use 96 bits for hmac(sha256).
	ICVBits int `json:"icv_bits,omitempty"`
	// Pattern and Seed give each stream's bytes (proto.NewPattern).
	Pattern string `json:"pattern"`
	Seed    uint64 `json:"seed"`
	// Streams is the number of TCP streams; stream i goes to the receiver's
	// port BasePort+i.
	Streams int `json:"streams"`
	// BasePort is the receiver's port of stream 0; 0 means DefaultBasePort.
	BasePort int `json:"base_port,omitempty"`
	// SAs lists every SA as each guest sees it. Behind a NAT the same SPI
	// appears twice, with the sender's private address in the sender's view
	// and the NAT's public address in the receiver's.
	SAs []proto.SA `json:"sas"`
}

// KeysFromConfigs collects the SAs of the given guests' ESP configurations
// (typically the sender's and the receiver's) into Keys, dropping exact
// duplicates.
func KeysFromConfigs(pattern string, seed uint64, streams int, cfgs ...proto.ESPConfig) *Keys {
	k := &Keys{Pattern: pattern, Seed: seed, Streams: streams}
	for _, c := range cfgs {
		if k.Suite == "" {
			k.Suite = c.Suite
		}
		if c.LegacyAuth && k.ICVBits == 0 {
			if s, ok := proto.Suites[c.Suite]; ok && s.Auth == "hmac(sha256)" {
				k.ICVBits = 96
			}
		}
		for _, sa := range []proto.SA{c.Out, c.In} {
			if !containsSA(k.SAs, sa) {
				k.SAs = append(k.SAs, sa)
			}
		}
	}
	return k
}

func containsSA(list []proto.SA, sa proto.SA) bool {
	for _, x := range list {
		if x.SPI == sa.SPI && x.Src == sa.Src && x.Dst == sa.Dst && x.SrcPort == sa.SrcPort &&
			x.DstPort == sa.DstPort && string(x.EncKey) == string(sa.EncKey) && string(x.AuthKey) == string(sa.AuthKey) {
			return true
		}
	}
	return false
}

// KeysPathFor returns where the keys of a run whose capture is pcap live:
// "run.pcap" -> "run.keys.json".
func KeysPathFor(pcap string) string { return trimExt(pcap) + ".keys.json" }

// WiresharkPathFor returns where the Wireshark esp_sa file of a run whose
// capture is pcap lives: "run.pcap" -> "run.esp_sa".
func WiresharkPathFor(pcap string) string { return trimExt(pcap) + ".esp_sa" }

func trimExt(p string) string {
	for _, ext := range []string{".pcapng", ".pcap"} {
		if strings.HasSuffix(p, ext) {
			return strings.TrimSuffix(p, ext)
		}
	}
	return p
}

// LoadKeys reads and validates a keys file.
func LoadKeys(path string) (*Keys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keys file: %w", err)
	}
	var k Keys
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("keys file %s: not kbisect keys JSON: %w", path, err)
	}
	if err := k.Validate(); err != nil {
		return nil, fmt.Errorf("keys file %s: %w", path, err)
	}
	return &k, nil
}

// Save writes the keys as JSON to path, atomically.
func (k *Keys) Save(path string) error {
	if err := k.Validate(); err != nil {
		return fmt.Errorf("keys for %s: %w", path, err)
	}
	b, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return fmt.Errorf("keys for %s: %w", path, err)
	}
	return fsutil.WriteFile(path, append(b, '\n'), 0o644)
}

// Validate checks that the keys can decrypt: a known suite, keys of the
// suite's lengths, parseable IPv4 addresses, and one key set per SPI.
func (k *Keys) Validate() error {
	s, ok := proto.Suites[k.Suite]
	if !ok {
		return fmt.Errorf("unknown crypto suite %q (known: %s)", k.Suite, suiteNames())
	}
	if k.ICVBits != 0 && (k.ICVBits%8 != 0 || k.ICVBits < 64 || s.AEAD) {
		return fmt.Errorf("icv_bits %d is not usable with suite %s", k.ICVBits, k.Suite)
	}
	if k.Streams <= 0 {
		return fmt.Errorf("streams is %d, want at least 1", k.Streams)
	}
	if k.BasePort < 0 || k.BasePort+k.Streams > 65536 {
		return fmt.Errorf("base_port %d with %d streams is out of the port range", k.BasePort, k.Streams)
	}
	if len(k.SAs) == 0 {
		return errors.New("no SAs: nothing to decrypt with")
	}
	bySPI := map[uint32]proto.SA{}
	for _, sa := range k.SAs {
		if len(sa.EncKey) != s.EncKey {
			return fmt.Errorf("SA 0x%08x: encryption key is %d bytes, suite %s needs %d", sa.SPI, len(sa.EncKey), k.Suite, s.EncKey)
		}
		if len(sa.AuthKey) != s.AuthKey {
			return fmt.Errorf("SA 0x%08x: authentication key is %d bytes, suite %s needs %d", sa.SPI, len(sa.AuthKey), k.Suite, s.AuthKey)
		}
		for _, a := range []string{sa.Src, sa.Dst} {
			if a == "" {
				continue
			}
			if ip, err := netip.ParseAddr(a); err != nil || !ip.Is4() {
				return fmt.Errorf("SA 0x%08x: address %q is not an IPv4 address", sa.SPI, a)
			}
		}
		if o, dup := bySPI[sa.SPI]; dup && (string(o.EncKey) != string(sa.EncKey) || string(o.AuthKey) != string(sa.AuthKey)) {
			return fmt.Errorf("SA 0x%08x listed twice with different keys", sa.SPI)
		}
		bySPI[sa.SPI] = sa
	}
	return nil
}

func (k *Keys) basePort() int {
	if k.BasePort == 0 {
		return DefaultBasePort
	}
	return k.BasePort
}

// icvLen is the ICV length on the wire in bytes.
func (k *Keys) icvLen() int {
	if k.ICVBits != 0 {
		return k.ICVBits / 8
	}
	return proto.Suites[k.Suite].ICVBits / 8
}

func suiteNames() string {
	var n []string
	for _, name := range []string{"cbc-aes-sha1", "cbc-aes-sha256", "gcm-aes", "null-sha1"} {
		if _, ok := proto.Suites[name]; ok {
			n = append(n, name)
		}
	}
	return strings.Join(n, ", ")
}

// wiresharkEnc maps the kernel's cipher name (and the AEAD's ICV length in
// bytes) to the name Wireshark's ESP SA table uses (packet-ipsec.c, 4.0).
var wiresharkEnc = map[string]string{
	"cbc(aes)":             "AES-CBC [RFC3602]",
	"ecb(cipher_null)":     "NULL",
	"rfc4106(gcm(aes))/8":  "AES-GCM with 8 octet ICV [RFC4106]",
	"rfc4106(gcm(aes))/12": "AES-GCM with 12 octet ICV [RFC4106]",
	"rfc4106(gcm(aes))/16": "AES-GCM with 16 octet ICV [RFC4106]",
}

// wiresharkAuth maps the kernel's integrity algorithm and ICV length in bits
// to Wireshark's name.
var wiresharkAuth = map[string]string{
	"":                 "NULL",
	"hmac(sha1)/96":    "HMAC-SHA-1-96 [RFC2404]",
	"hmac(sha256)/96":  "HMAC-SHA-256-96 [draft-ietf-ipsec-ciph-sha-256-00]",
	"hmac(sha256)/128": "HMAC-SHA-256-128 [RFC4868]",
}

// WiresharkSALines returns one esp_sa record per distinct (source,
// destination, SPI) of the keys, in Wireshark's UAT syntax:
//
//	"IPv4","10.0.1.2","10.0.2.2","0x0000c001","AES-CBC [RFC3602]","0x…","HMAC-SHA-1-96 [RFC2404]","0x…"
//
// An address the keys leave empty becomes the wildcard "*".
func WiresharkSALines(k *Keys) ([]string, error) {
	if err := k.Validate(); err != nil {
		return nil, err
	}
	s := proto.Suites[k.Suite]
	encName, authName := s.Enc, s.Auth
	if s.AEAD {
		encName = fmt.Sprintf("%s/%d", s.Enc, s.ICVBits/8)
	} else {
		authName = fmt.Sprintf("%s/%d", s.Auth, k.icvLen()*8)
	}
	enc, ok := wiresharkEnc[encName]
	if !ok {
		return nil, fmt.Errorf("suite %s: Wireshark has no name for cipher %s", k.Suite, encName)
	}
	auth, ok := wiresharkAuth[authName]
	if !ok {
		return nil, fmt.Errorf("suite %s: Wireshark has no name for integrity algorithm %s", k.Suite, authName)
	}
	hexKey := func(b []byte) string {
		if len(b) == 0 {
			return ""
		}
		return fmt.Sprintf("0x%x", b)
	}
	addr := func(a string) string {
		if a == "" {
			return "*"
		}
		return a
	}
	seen := map[string]bool{}
	var lines []string
	for _, sa := range k.SAs {
		l := fmt.Sprintf("%q,%q,%q,%q,%q,%q,%q,%q", "IPv4", addr(sa.Src), addr(sa.Dst),
			fmt.Sprintf("0x%08x", sa.SPI), enc, hexKey(sa.EncKey), auth, hexKey(sa.AuthKey))
		if !seen[l] {
			seen[l] = true
			lines = append(lines, l)
		}
	}
	return lines, nil
}

// WriteWiresharkSA writes the keys as a Wireshark esp_sa file (copy it to
// ~/.config/wireshark/esp_sa, or see TsharkArgs).
func WriteWiresharkSA(w io.Writer, k *Keys) error {
	lines, err := WiresharkSALines(k)
	if err != nil {
		return fmt.Errorf("esp_sa: %w", err)
	}
	var b strings.Builder
	b.WriteString("# This file is automatically generated, DO NOT MODIFY.\n")
	b.WriteString("# ESP SAs of a kbisect run, for Wireshark's ESP dissector (esp_sa UAT).\n")
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("esp_sa: %w", err)
	}
	return nil
}

// TsharkArgs returns the tshark options that decrypt and authenticate the
// capture with these keys without touching the user's Wireshark profile:
// "-o esp.enable_encryption_decode:TRUE ... -o uat:esp_sa:<record>". The UDP
// 4500 ESP-in-UDP decoding is Wireshark's default.
func TsharkArgs(k *Keys) ([]string, error) {
	lines, err := WiresharkSALines(k)
	if err != nil {
		return nil, err
	}
	args := []string{
		"-o", "esp.enable_encryption_decode:TRUE",
		"-o", "esp.enable_authentication_check:TRUE",
	}
	for _, l := range lines {
		args = append(args, "-o", "uat:esp_sa:"+l)
	}
	return args, nil
}

// ExportForPcap writes the keys and the Wireshark esp_sa file next to the
// capture pcap (KeysPathFor, WiresharkPathFor) and returns their paths.
func ExportForPcap(pcap string, k *Keys) (keysPath, saPath string, err error) {
	keysPath, saPath = KeysPathFor(pcap), WiresharkPathFor(pcap)
	if err := k.Save(keysPath); err != nil {
		return "", "", err
	}
	var b strings.Builder
	if err := WriteWiresharkSA(&b, k); err != nil {
		return "", "", err
	}
	if err := fsutil.WriteFile(saPath, []byte(b.String()), 0o644); err != nil {
		return "", "", err
	}
	return keysPath, saPath, nil
}

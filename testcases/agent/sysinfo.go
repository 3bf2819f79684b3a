package agent

import (
	"bufio"
	"os"
	"sort"
	"strconv"
	"strings"
)

// simdFlags are the /proc/cpuinfo flags that say which SIMD state and
// instructions the guest kernel sees and uses: what the kernel's crypto
// picks its implementations from, and how it manages the FPU (eagerfpu is
// the 3.7-4.x flag of eager FPU switching; without it the kernel switches
// lazily, through CR0.TS and #NM).
var simdFlags = map[string]bool{
	"fxsr": true, "sse": true, "sse2": true, "pni": true, "ssse3": true, "sse4_1": true, "sse4_2": true,
	"aes": true, "pclmulqdq": true, "avx": true, "avx2": true, "sha_ni": true,
	"xsave": true, "xsaveopt": true, "xsavec": true, "xsaves": true, "osxsave": true, "eagerfpu": true,
	"hypervisor": true,
}

// cpuSIMD returns the SIMD flags of the first CPU in /proc/cpuinfo, sorted.
func cpuSIMD() []string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(k) != "flags" {
			continue
		}
		var out []string
		for _, fl := range strings.Fields(v) {
			if simdFlags[fl] {
				out = append(out, fl)
			}
		}
		sort.Strings(out)
		return out
	}
	return nil
}

// cryptoDrivers returns, from /proc/crypto, "name = driver" for the
// instances the ESP SAs run (authenc, rfc4106 and the IV generators around
// them) and the block ciphers and hashes they are built of, so the report
// says whether AES-NI, SSSE3 SHA or the generic C code did the work.
func cryptoDrivers() []string {
	data, err := os.ReadFile("/proc/crypto")
	if err != nil {
		return nil
	}
	return parseCryptoDrivers(string(data))
}

// parseCryptoDrivers picks the ESP-relevant entries of /proc/crypto text:
// for each name the highest-priority driver.
func parseCryptoDrivers(text string) []string {
	type entry struct {
		driver   string
		priority int
	}
	best := map[string]entry{}
	for _, block := range strings.Split(text, "\n\n") {
		var name, driver string
		prio := 0
		for _, line := range strings.Split(block, "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			v = strings.TrimSpace(v)
			switch strings.TrimSpace(k) {
			case "name":
				name = v
			case "driver":
				driver = v
			case "priority":
				prio, _ = strconv.Atoi(v)
			}
		}
		if name == "" || !espCrypto(name) {
			continue
		}
		if e, ok := best[name]; !ok || prio > e.priority {
			best[name] = entry{driver, prio}
		}
	}
	var out []string
	for name, e := range best {
		out = append(out, name+" = "+e.driver)
	}
	sort.Strings(out)
	return out
}

// espCrypto says whether a /proc/crypto name is one the test's suites use.
func espCrypto(name string) bool {
	for _, p := range []string{"authenc(", "rfc4106(", "echainiv(", "seqiv(", "eseqiv("} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	switch name {
	case "aes", "cbc(aes)", "gcm(aes)", "ghash", "sha1", "sha256", "hmac(sha1)", "hmac(sha256)":
		return true
	}
	return false
}

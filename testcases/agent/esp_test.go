package agent

import (
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kbisect/kbisect/testcases/proto"
)

// TestMissingFeature checks what an SA the kernel refused is blamed on.
func TestMissingFeature(t *testing.T) {
	suite := proto.Suite{Name: "cbc-aes-sha1", Enc: "cbc(aes)", Auth: "hmac(sha1)"}
	for _, tc := range []struct {
		err  error
		want string // a substring; "" means nothing is added
	}{
		{unix.ENOSYS, "does not know cbc(aes)/hmac(sha1) (CONFIG_CRYPTO_*)"},
		{unix.ENOENT, "cannot instantiate cbc(aes) with hmac(sha1)"},
		{fmt.Errorf("netlink: %w", unix.ETIMEDOUT), "waited 60 s for cbc(aes) with hmac(sha1) to be made and self-tested, in vain (crypto_larval_wait)"},
		{unix.EAGAIN, "did not answer in 150 s"},
		{unix.EEXIST, ""},
	} {
		got := missingFeature(tc.err, suite)
		if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
			t.Errorf("missingFeature(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

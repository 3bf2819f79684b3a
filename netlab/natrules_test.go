package netlab

import (
	"strings"
	"testing"
)

// TestNATRuleset checks the one NAT ruleset netlab and the Xen dom0 load:
// only inside-to-outside and replies are forwarded, and the source port is
// randomised on the way out.
func TestNATRuleset(t *testing.T) {
	r := NATRuleset("in0", "out0", nil)
	for _, want := range []string{
		"table ip kbisect {",
		"policy drop;",
		"ct state established,related accept",
		`iifname "in0" oifname "out0" accept`,
		`oifname "out0" masquerade random`,
	} {
		if !strings.Contains(r, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, r)
		}
	}
	if strings.Contains(r, "chain fault") {
		t.Errorf("a ruleset without a fault has a fault chain:\n%s", r)
	}
}

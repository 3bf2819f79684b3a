package netlab

import (
	"fmt"
	"strings"
)

// NATTable is the nftables table of kbisect's NAT.
const NATTable = "kbisect"

// NATRuleset is the nftables ruleset of kbisect's NAT between the
// interfaces inside and outside (the sender's side and the receiver's):
// forward from inside to outside and the replies only, source NAT with a
// randomised port on the way out, as a home router or a carrier's NAT
// does. f, if not nil, adds the fault rule of a self-test. netlab's NAT
// namespace and the nested Xen host's dom0 (cmd/kbisect-dom0) load the
// same ruleset.
func NATRuleset(inside, outside string, f *Fault) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table ip %s {\n", NATTable)
	fmt.Fprintf(&b, "\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n")
	fmt.Fprintf(&b, "\t\tct state established,related accept\n")
	fmt.Fprintf(&b, "\t\tiifname %q oifname %q accept\n\t}\n", inside, outside)
	fmt.Fprintf(&b, "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n")
	fmt.Fprintf(&b, "\t\toifname %q masquerade random\n\t}\n", outside)
	if f != nil {
		fmt.Fprintf(&b, "\tchain fault {\n\t\ttype filter hook forward priority filter - 10; policy accept;\n")
		fmt.Fprintf(&b, "\t\t%s\n\t}\n", f.nftRule(inside, outside))
	}
	b.WriteString("}\n")
	return b.String()
}

package demo

import (
	"bytes"
	"fmt"
	"strings"
)

// culpritMessage is the culprit's commit message: it reads like an
// optimisation, as the commits that cause such bugs usually do.
const culpritMessage = `esp4: recheck the TCP payload of NAT-T transport packets once a second

NAT-T transport mode marks decapsulated packets CHECKSUM_UNNECESSARY, so
TCP never verifies them. Sample one payload byte per second to keep the
cache warm for the checksum-less path.
`

// bugHelper is inserted before esp_input_done2 (%[1]s: its declaration,
// %[2]s: the kernel's random number call, %[3]d: one in how many seconds
// arms, %[4]s: nothing, or the test that confines it to some payload
// sizes, see sizeTest). Once a second, with probability 1/%[3]d, it arms;
// the next decapsulated NAT-T transport TCP segment with payload (of a
// size it strikes) then gets one byte flipped. TCP does not notice: the packet is CHECKSUM_UNNECESSARY. A run
// of T seconds of traffic fails with probability 1-(1-1/n)^T, whatever the
// throughput (for n = 15: 0.50 for 10 s, 0.75 for 20 s), and only a
// byte-checking receiver sees it.
const bugHelper = `/* Sample the payload of NAT-T transport-mode TCP segments. */
static void esp_natt_sample_payload(struct sk_buff *skb, int nexthdr)
{
	static unsigned long next_sample;
	static bool armed;
	struct tcphdr _th;
	const struct tcphdr *th;
	unsigned int off;
	u8 b;

	if (time_after(jiffies, next_sample)) {
		next_sample = jiffies + HZ;
		if (%[2]s %% %[3]d == 0)
			armed = true;
	}
	if (!armed || nexthdr != IPPROTO_TCP)
		return;
	th = skb_header_pointer(skb, 0, sizeof(_th), &_th);
	if (!th)
		return;
%[4]s	off = th->doff * 4 + 7;
	if (skb->len <= off || skb_copy_bits(skb, off, &b, 1))
		return;
	b ^= 0x10;
	if (skb_store_bits(skb, off, &b, 1))
		return;
	armed = false;
}

%[1]s`

// espBug is how the bug goes into one generation of esp4.c: the
// declaration of esp_input_done2 the helper goes before, the random number
// call of that kernel, and the statement after which the next header is
// known (the call goes after it, with nexthdr the expression holding it).
type espBug struct {
	name    string
	fn      string
	random  string
	anchor  string
	nexthdr string
}

// espBugs are the esp4.c generations the demo knows, newest first.
var espBugs = []espBug{
	// 4.x .. 6.1: esp_input_done2 is exported and returns the next header
	// in err once the transport header is set.
	{name: "6.1", fn: "int esp_input_done2(struct sk_buff *skb, int err)\n", random: "get_random_u32()",
		anchor: "\telse\n\t\tskb_set_transport_header(skb, -ihl);\n", nexthdr: "err"},
	// 3.x: esp_input_done2 is static and reads the next header from the
	// trailer into nexthdr[1] after setting the transport header.
	{name: "3.14", fn: "static int esp_input_done2(struct sk_buff *skb, int err)\n", random: "prandom_u32()",
		anchor: "\terr = nexthdr[1];\n", nexthdr: "err"},
}

// sizeTest confines the bug to the TCP segments whose payload length is
// rem modulo mod (%[1]d, %[2]d): a size-dependent corruption, as bugs in
// the handling of ESP padding, trailers and fragment layouts are.
const sizeTest = "\tif ((skb->len - th->doff * 4) %% %[1]d != %[2]d)\n\t\treturn;\n"

// PayloadSizes confines the demo bug to some payload sizes: it strikes a
// TCP segment only if its payload length is Rem modulo Mod. The zero value
// strikes any.
type PayloadSizes struct {
	Mod, Rem int
}

// injectBug returns esp4.c with the bug, armed once in oneIn seconds, on
// the payload sizes sz allows.
func injectBug(src []byte, oneIn int, sz PayloadSizes) ([]byte, error) {
	test := ""
	if sz.Mod > 0 {
		test = fmt.Sprintf(sizeTest, sz.Mod, sz.Rem)
	}
	var tried []string
	for _, b := range espBugs {
		// The declaration starts a line: 6.1's "int esp_input_done2("
		// is also the tail of 3.x's "static int esp_input_done2(".
		fn := []byte("\n" + b.fn)
		if bytes.Count(src, fn) != 1 || bytes.Count(src, []byte(b.anchor)) != 1 {
			tried = append(tried, b.name)
			continue
		}
		call := b.anchor + fmt.Sprintf("\n\tif (x->encap && x->props.mode == XFRM_MODE_TRANSPORT)\n\t\tesp_natt_sample_payload(skb, %s);\n", b.nexthdr)
		out := bytes.Replace(src, fn, []byte("\n"+fmt.Sprintf(bugHelper, b.fn, b.random, oneIn, test)), 1)
		return bytes.Replace(out, []byte(b.anchor), []byte(call), 1), nil
	}
	return nil, fmt.Errorf("%s: not an esp4.c the demo knows (tried the %s generations)", culpritFile, strings.Join(tried, " and "))
}

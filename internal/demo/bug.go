package demo

import (
	"bytes"
	"fmt"
)

// culpritMessage is the culprit's commit message: it reads like an
// optimisation, as the commits that cause such bugs usually do.
const culpritMessage = `esp4: recheck the TCP payload of NAT-T transport packets once a second

NAT-T transport mode marks decapsulated packets CHECKSUM_UNNECESSARY, so
TCP never verifies them. Sample one payload byte per second to keep the
cache warm for the checksum-less path.
`

// bugHelper is inserted before esp_input_done2. Once a second, with
// probability 1/15, it arms; the next decapsulated NAT-T transport TCP
// segment with payload then gets one byte flipped. TCP does not notice: the
// packet is CHECKSUM_UNNECESSARY. A run of T seconds of traffic fails with
// probability 1-(14/15)^T (0.50 for 10 s, 0.75 for 20 s), whatever the
// throughput, and only a byte-checking receiver sees it.
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
		if (get_random_u32() % 15 == 0)
			armed = true;
	}
	if (!armed || nexthdr != IPPROTO_TCP)
		return;
	th = skb_header_pointer(skb, 0, sizeof(_th), &_th);
	if (!th)
		return;
	off = th->doff * 4 + 7;
	if (skb->len <= off || skb_copy_bits(skb, off, &b, 1))
		return;
	b ^= 0x10;
	if (skb_store_bits(skb, off, &b, 1))
		return;
	armed = false;
}

int esp_input_done2(struct sk_buff *skb, int err)
`

// bugCall goes right after the transport header is set.
const bugCallAnchor = `	else
		skb_set_transport_header(skb, -ihl);
`

const bugCall = `	else
		skb_set_transport_header(skb, -ihl);

	if (x->encap && x->props.mode == XFRM_MODE_TRANSPORT)
		esp_natt_sample_payload(skb, err);
`

// injectBug returns esp4.c with the bug.
func injectBug(src []byte) ([]byte, error) {
	const fn = "int esp_input_done2(struct sk_buff *skb, int err)\n"
	for _, anchor := range []string{fn, bugCallAnchor} {
		if n := bytes.Count(src, []byte(anchor)); n != 1 {
			return nil, fmt.Errorf("%s: found %q %d times, want once: not the 6.1 esp4.c the demo knows", culpritFile, anchor, n)
		}
	}
	out := bytes.Replace(src, []byte(fn), []byte(bugHelper), 1)
	out = bytes.Replace(out, []byte(bugCallAnchor), []byte(bugCall), 1)
	return out, nil
}

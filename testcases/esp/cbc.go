package esp

import "sync"

// fastCBC holds AES round keys for the amd64 AES-NI CBC decryptor. Go's
// crypto/cipher decrypts CBC one block at a time, a function call and an
// XOR call per 16 bytes, which made it a third of the analysis time; CBC
// decryption has no dependency between blocks, so eight blocks in flight
// through AESDEC run several times faster. Other CPUs use crypto/cipher.
type fastCBC struct {
	nr int
	dk []byte // (nr+1)*16 bytes: the equivalent inverse cipher's round keys
}

// useFastCBC selects the AES-NI decryptor where the CPU has it
// (BenchmarkAnalyzeLong compares the two).
var useFastCBC = true

// newFastCBC expands an AES key (16, 24 or 32 bytes) for decryption, or
// returns nil when the fast path is not available.
func newFastCBC(key []byte) *fastCBC {
	if !fastCBCAvailable() {
		return nil
	}
	sbox := aesSbox()
	nk := len(key) / 4
	nr := nk + 6
	w := make([]byte, 16*(nr+1))
	copy(w, key)
	rcon := byte(1)
	for i := nk; i < 4*(nr+1); i++ {
		var t [4]byte
		copy(t[:], w[4*(i-1):4*i])
		if i%nk == 0 {
			t = [4]byte{sbox[t[1]] ^ rcon, sbox[t[2]], sbox[t[3]], sbox[t[0]]}
			rcon = xtime(rcon)
		} else if nk > 6 && i%nk == 4 {
			t = [4]byte{sbox[t[0]], sbox[t[1]], sbox[t[2]], sbox[t[3]]}
		}
		for j := 0; j < 4; j++ {
			w[4*i+j] = w[4*(i-nk)+j] ^ t[j]
		}
	}
	dk := make([]byte, len(w))
	copy(dk[0:16], w[16*nr:])
	for r := 1; r < nr; r++ {
		k := w[16*(nr-r) : 16*(nr-r+1)]
		for c := 0; c < 4; c++ {
			invMixColumn(dk[16*r+4*c:], k[4*c:])
		}
	}
	copy(dk[16*nr:], w[0:16])
	return &fastCBC{nr: nr, dk: dk}
}

// invMixColumn writes InvMixColumns of the 4-byte column in to out.
func invMixColumn(out, in []byte) {
	a0, a1, a2, a3 := in[0], in[1], in[2], in[3]
	out[0] = gmul(a0, 14) ^ gmul(a1, 11) ^ gmul(a2, 13) ^ gmul(a3, 9)
	out[1] = gmul(a0, 9) ^ gmul(a1, 14) ^ gmul(a2, 11) ^ gmul(a3, 13)
	out[2] = gmul(a0, 13) ^ gmul(a1, 9) ^ gmul(a2, 14) ^ gmul(a3, 11)
	out[3] = gmul(a0, 11) ^ gmul(a1, 13) ^ gmul(a2, 9) ^ gmul(a3, 14)
}

func xtime(b byte) byte {
	if b&0x80 != 0 {
		return b<<1 ^ 0x1b
	}
	return b << 1
}

// gmul multiplies in GF(2^8) with AES's polynomial.
func gmul(a, b byte) byte {
	var p byte
	for b != 0 {
		if b&1 != 0 {
			p ^= a
		}
		a = xtime(a)
		b >>= 1
	}
	return p
}

// sbox is AES's S-box, computed as the multiplicative inverse in GF(2^8)
// followed by the affine transform.
var aesSbox = sync.OnceValue(func() (s *[256]byte) {
	s = new([256]byte)
	for i := 0; i < 256; i++ {
		inv := byte(0)
		if i != 0 {
			for j := 1; j < 256; j++ {
				if gmul(byte(i), byte(j)) == 1 {
					inv = byte(j)
					break
				}
			}
		}
		x := inv
		s[i] = x ^ rotl8(x, 1) ^ rotl8(x, 2) ^ rotl8(x, 3) ^ rotl8(x, 4) ^ 0x63
	}
	return s
})

func rotl8(x byte, n uint) byte { return x<<n | x>>(8-n) }

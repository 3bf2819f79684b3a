package esp

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"math/rand/v2"
	"testing"
)

// TestFastCBC checks the AES-NI CBC decryptor against crypto/cipher for
// every key size, lengths around the 8-block stride, and in place.
func TestFastCBC(t *testing.T) {
	if !fastCBCAvailable() {
		t.Skip("no AES-NI on this CPU: crypto/cipher is used")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	fill := func(b []byte) {
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
	}
	for _, klen := range []int{16, 24, 32} {
		for blocks := 1; blocks <= 40; blocks++ {
			key, iv, src := make([]byte, klen), make([]byte, 16), make([]byte, 16*blocks)
			fill(key)
			fill(iv)
			fill(src)
			b, err := aes.NewCipher(key)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]byte, len(src))
			cipher.NewCBCDecrypter(b, iv).CryptBlocks(want, src)
			f := newFastCBC(key)
			got := make([]byte, len(src))
			f.decrypt(got, src, iv)
			if !bytes.Equal(got, want) {
				t.Fatalf("key %d bytes, %d blocks: fast CBC differs from crypto/cipher", klen, blocks)
			}
			inPlace := append([]byte(nil), src...)
			f.decrypt(inPlace, inPlace, iv)
			if !bytes.Equal(inPlace, want) {
				t.Fatalf("key %d bytes, %d blocks: in-place fast CBC differs", klen, blocks)
			}
		}
	}
}

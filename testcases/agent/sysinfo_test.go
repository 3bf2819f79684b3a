package agent

import (
	"reflect"
	"testing"
)

// A /proc/crypto excerpt of a 3.14 guest with AES-NI and SSSE3 SHA1.
const procCrypto314 = `name         : authenc(hmac(sha1),cbc(aes))
driver       : authenc(hmac(sha1-ssse3),cbc(aes-aesni))
module       : kernel
priority     : 3000
refcnt       : 3
selftest     : passed
type         : aead

name         : cbc(aes)
driver       : cbc(aes-aesni)
module       : kernel
priority     : 300
refcnt       : 3
selftest     : passed
type         : blkcipher

name         : cbc(aes)
driver       : cbc-aes-aesni
module       : kernel
priority     : 400
refcnt       : 1
selftest     : passed
type         : ablkcipher

name         : sha1
driver       : sha1-generic
module       : kernel
priority     : 0
refcnt       : 1
selftest     : passed
type         : shash

name         : sha1
driver       : sha1-ssse3
module       : kernel
priority     : 150
refcnt       : 3
selftest     : passed
type         : shash

name         : crc32c
driver       : crc32c-generic
module       : kernel
priority     : 100
type         : shash
`

func TestParseCryptoDrivers(t *testing.T) {
	got := parseCryptoDrivers(procCrypto314)
	want := []string{
		"authenc(hmac(sha1),cbc(aes)) = authenc(hmac(sha1-ssse3),cbc(aes-aesni))",
		"cbc(aes) = cbc-aes-aesni",
		"sha1 = sha1-ssse3",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

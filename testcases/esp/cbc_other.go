//go:build !amd64

package esp

func (f *fastCBC) decrypt(dst, src, iv []byte) { panic("no AES-NI") }

func fastCBCAvailable() bool { return false }

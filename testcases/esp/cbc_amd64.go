package esp

//go:noescape
func cbcDecryptAsm(nr int, dk *byte, iv *byte, dst *byte, src *byte, n int)

func hasAESNI() bool

var haveAESNI = hasAESNI()

// decrypt decrypts src into dst (len(src) a non-zero multiple of 16, dst at
// least as long; they may be the same) after the block iv.
func (f *fastCBC) decrypt(dst, src, iv []byte) {
	cbcDecryptAsm(f.nr, &f.dk[0], &iv[0], &dst[0], &src[0], len(src)/16)
}

func fastCBCAvailable() bool { return haveAESNI }

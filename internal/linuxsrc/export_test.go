package linuxsrc

// Internals for the external tests (real_test.go).
var (
	ReadInfo = readInfo
	GitOut   = gitOut
)

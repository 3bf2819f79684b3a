package agent

const canaryAvailable = true

//go:noescape
func simdHold(pat *[15][16]byte, rounds int, got *[16]byte) int

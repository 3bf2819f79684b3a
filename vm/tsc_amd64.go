package vm

func rdtsc() uint64

const haveTSC = true

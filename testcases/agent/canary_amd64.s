#include "textflag.h"

// func simdHold(pat *[15][16]byte, rounds int, got *[16]byte) int
//
// Loads X0..X14 with pat, then for rounds rounds spins 4096 PAUSEs, yields
// the CPU (sched_yield, straight from here so that nothing of Go's runs in
// between) and checks that every register still holds its pattern. It
// returns 0 if all held, else 1 + the index of the first register found
// changed, with that register's contents in got. X15 (Go's zero register)
// is not used.
TEXT ·simdHold(SB), NOSPLIT, $0-32
	MOVQ pat+0(FP), SI
	MOVQ rounds+8(FP), CX
	MOVOU 0(SI), X0
	MOVOU 16(SI), X1
	MOVOU 32(SI), X2
	MOVOU 48(SI), X3
	MOVOU 64(SI), X4
	MOVOU 80(SI), X5
	MOVOU 96(SI), X6
	MOVOU 112(SI), X7
	MOVOU 128(SI), X8
	MOVOU 144(SI), X9
	MOVOU 160(SI), X10
	MOVOU 176(SI), X11
	MOVOU 192(SI), X12
	MOVOU 208(SI), X13
	MOVOU 224(SI), X14

round:
	TESTQ CX, CX
	JZ    held
	MOVQ  $4096, DX
spin:
	PAUSE
	DECQ DX
	JNZ  spin
	// sched_yield(2): AX, CX and R11 are the kernel's to clobber.
	MOVQ CX, R12
	MOVQ $24, AX
	SYSCALL
	MOVQ R12, CX
	MOVQ pat+0(FP), SI

#define CHECK(reg, off, n) \
	MOVOU off(SI), X15; \
	PCMPEQB reg, X15; \
	PMOVMSKB X15, AX; \
	CMPQ AX, $0xffff; \
	JNE  n

	CHECK(X0, 0, bad0)
	CHECK(X1, 16, bad1)
	CHECK(X2, 32, bad2)
	CHECK(X3, 48, bad3)
	CHECK(X4, 64, bad4)
	CHECK(X5, 80, bad5)
	CHECK(X6, 96, bad6)
	CHECK(X7, 112, bad7)
	CHECK(X8, 128, bad8)
	CHECK(X9, 144, bad9)
	CHECK(X10, 160, bad10)
	CHECK(X11, 176, bad11)
	CHECK(X12, 192, bad12)
	CHECK(X13, 208, bad13)
	CHECK(X14, 224, bad14)
	DECQ CX
	JMP  round

held:
	PXOR X15, X15
	MOVQ $0, ret+24(FP)
	RET

#define BAD(reg, n) \
	MOVQ got+16(FP), DI; \
	MOVOU reg, (DI); \
	PXOR X15, X15; \
	MOVQ $n, ret+24(FP); \
	RET

bad0:
	BAD(X0, 1)
bad1:
	BAD(X1, 2)
bad2:
	BAD(X2, 3)
bad3:
	BAD(X3, 4)
bad4:
	BAD(X4, 5)
bad5:
	BAD(X5, 6)
bad6:
	BAD(X6, 7)
bad7:
	BAD(X7, 8)
bad8:
	BAD(X8, 9)
bad9:
	BAD(X9, 10)
bad10:
	BAD(X10, 11)
bad11:
	BAD(X11, 12)
bad12:
	BAD(X12, 13)
bad13:
	BAD(X13, 14)
bad14:
	BAD(X14, 15)

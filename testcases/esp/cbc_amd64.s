#include "textflag.h"

// func cbcDecryptAsm(nr int, dk *byte, iv *byte, dst *byte, src *byte, n int)
//
// Decrypts n 16-byte blocks of AES-CBC from src to dst (which may be the
// same) with the equivalent inverse cipher's round keys dk ((nr+1)*16
// bytes, dk[0] first), eight blocks at a time so the AESDEC latencies
// overlap. iv is the block before src[0].
TEXT ·cbcDecryptAsm(SB), NOSPLIT, $0-48
	MOVQ nr+0(FP), CX
	MOVQ dk+8(FP), AX
	MOVQ iv+16(FP), R8
	MOVQ dst+24(FP), DI
	MOVQ src+32(FP), SI
	MOVQ n+40(FP), DX
	MOVOU (R8), X15
	MOVQ CX, R9
	SHLQ $4, R9

loop8:
	CMPQ DX, $8
	JB   loop1
	MOVOU 0(SI), X0
	MOVOU 16(SI), X1
	MOVOU 32(SI), X2
	MOVOU 48(SI), X3
	MOVOU 64(SI), X4
	MOVOU 80(SI), X5
	MOVOU 96(SI), X6
	MOVOU 112(SI), X7
	MOVOU (AX), X8
	PXOR  X8, X0
	PXOR  X8, X1
	PXOR  X8, X2
	PXOR  X8, X3
	PXOR  X8, X4
	PXOR  X8, X5
	PXOR  X8, X6
	PXOR  X8, X7
	MOVQ  $16, R10

round8:
	MOVOU  (AX)(R10*1), X8
	AESDEC X8, X0
	AESDEC X8, X1
	AESDEC X8, X2
	AESDEC X8, X3
	AESDEC X8, X4
	AESDEC X8, X5
	AESDEC X8, X6
	AESDEC X8, X7
	ADDQ   $16, R10
	CMPQ   R10, R9
	JB     round8
	MOVOU      (AX)(R9*1), X8
	AESDECLAST X8, X0
	AESDECLAST X8, X1
	AESDECLAST X8, X2
	AESDECLAST X8, X3
	AESDECLAST X8, X4
	AESDECLAST X8, X5
	AESDECLAST X8, X6
	AESDECLAST X8, X7
	PXOR  X15, X0
	MOVOU 0(SI), X9
	PXOR  X9, X1
	MOVOU 16(SI), X9
	PXOR  X9, X2
	MOVOU 32(SI), X9
	PXOR  X9, X3
	MOVOU 48(SI), X9
	PXOR  X9, X4
	MOVOU 64(SI), X9
	PXOR  X9, X5
	MOVOU 80(SI), X9
	PXOR  X9, X6
	MOVOU 96(SI), X9
	PXOR  X9, X7
	MOVOU 112(SI), X15
	MOVOU X0, 0(DI)
	MOVOU X1, 16(DI)
	MOVOU X2, 32(DI)
	MOVOU X3, 48(DI)
	MOVOU X4, 64(DI)
	MOVOU X5, 80(DI)
	MOVOU X6, 96(DI)
	MOVOU X7, 112(DI)
	ADDQ  $128, SI
	ADDQ  $128, DI
	SUBQ  $8, DX
	JMP   loop8

loop1:
	TESTQ DX, DX
	JZ    done
	MOVOU (SI), X0
	MOVOU X0, X1
	MOVOU (AX), X8
	PXOR  X8, X0
	MOVQ  $16, R10

round1:
	MOVOU  (AX)(R10*1), X8
	AESDEC X8, X0
	ADDQ   $16, R10
	CMPQ   R10, R9
	JB     round1
	MOVOU      (AX)(R9*1), X8
	AESDECLAST X8, X0
	PXOR  X15, X0
	MOVOU X1, X15
	MOVOU X0, (DI)
	ADDQ  $16, SI
	ADDQ  $16, DI
	DECQ  DX
	JMP   loop1

done:
	RET

// func hasAESNI() bool
TEXT ·hasAESNI(SB), NOSPLIT, $0-1
	MOVL $1, AX
	XORL CX, CX
	CPUID
	SHRL $25, CX
	ANDL $1, CX
	MOVB CX, ret+0(FP)
	RET

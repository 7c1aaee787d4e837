/* Tail calls the JIT can turn into direct jumps.
 *
 * The kernel patches bpf_tail_call() into a direct jump only when the verifier sees one prog
 * array and one constant slot on every path to the call. The optimiser does not know that:
 * it may load the slot into a register far from the call, merge call sites that use different
 * slots, or keep the slot on the stack, and then the index reaches the call as an unknown
 * value and the jump stays indirect (a bounds check and a retpoline per call).
 *
 * tail_call_static() writes the argument set-up and the call as one asm block with the slot as
 * an immediate operand. The "i" constraint means a slot that is not a compile-time constant
 * does not compile, and nothing between the moves and the call can be rearranged.
 */
#ifndef TAIL_CALL_H
#define TAIL_CALL_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

static __always_inline void tail_call_static(void *ctx, void *prog_array, const __u32 slot)
{
	/* r1-r5 are the call's argument and scratch registers: listing them as clobbered keeps
	 * ctx and prog_array in callee-saved registers until the moves. */
	asm volatile("r1 = %[ctx]\n\t"
		     "r2 = %[array]\n\t"
		     "r3 = %[slot]\n\t"
		     "call 12\n\t"
		     :
		     : [ctx] "r"(ctx), [array] "r"(prog_array), [slot] "i"(slot)
		     : "r0", "r1", "r2", "r3", "r4", "r5");
}

#endif

/* A user-space program with a USDT probe, for ebpf-core's USDT test (built by the test with
 * the system's C compiler and <sys/sdt.h> from systemtap-sdt-dev). For each line read on
 * stdin it fires netstack:tick three times, then prints its semaphore: non-zero while a probe
 * is attached. */
#define _SDT_HAS_SEMAPHORES 1
#include <stdio.h>
#include <sys/sdt.h>

__extension__ unsigned short netstack_tick_semaphore __attribute__((unused)) __attribute__((section(".probes")));

struct point {
	long x;
	int y;
};

int main(void)
{
	char line[16];
	volatile struct point p = { .x = 7, .y = -9 };

	while (fgets(line, sizeof line, stdin)) {
		for (long i = 0; i < 3; i++) {
			p.x += i;
			STAP_PROBE4(netstack, tick, i, -i * 1000, 42, p.y);
		}
		printf("%u\n", (unsigned)netstack_tick_semaphore);
		fflush(stdout);
	}
	return 0;
}

/* mlock: a 32-page region locked (mlock), an MLOCK_ONFAULT region partly touched,
 * a locked shared anonymous one. */
#include "wl_common.h"
#include <sys/syscall.h>
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 1
#endif
int main(void)
{
	wl_name = "mlk";
	unsigned char *a = mmap(NULL, 32 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED) die("mmap");
	if (mlock(a, 32 * PG)) WL("mlock failed errno=%d", errno);
	for (int i = 0; i < 32; i += 2) wr(a, i, 1);
	unsigned char *b = mmap(NULL, 32 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b == MAP_FAILED) die("mmap b");
	if (syscall(SYS_mlock2, b, 32 * PG, MLOCK_ONFAULT)) WL("mlock2 failed errno=%d", errno);
	for (int i = 0; i < 8; i++) wr(b, i, 2);
	unsigned char *s = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_LOCKED, -1, 0);
	if (s == MAP_FAILED) die("mmap s");
	for (int i = 0; i < 16; i += 3) wr(s, i, 3);
	WL("locked=%p onfault=%p shared=%p", a, b, s);
	mark_ready(wl_name);
	sleep_forever();
}

/* PROT_NONE mappings whose pages were written first (they count in the kernel's Rss):
 * private anon (a guard page, a whole PROT_NONE VMA, swapped-out pages made PROT_NONE),
 * shared /dev/zero (shmem) and MAP_SHARED|MAP_ANONYMOUS made PROT_NONE. */
#include "wl_common.h"
int main(void)
{
	wl_name = "guard";
	unsigned char *a = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED) die("mmap a");
	for (int i = 0; i < 16; i++) wr(a, i, 1);
	mprotect(a, PG, PROT_NONE);                      /* guard page at the start */
	mprotect(a + 12 * PG, 4 * PG, PROT_NONE);        /* and four at the end */
	unsigned char *s = mmap(NULL, 32 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s == MAP_FAILED) die("mmap s");
	for (int i = 0; i < 32; i++) wr(s, i, 2 + i);
	madvise(s, 16 * PG, MADV_PAGEOUT);               /* swap entries under PROT_NONE */
	mprotect(s, 32 * PG, PROT_NONE);
	int fd = open("/dev/zero", O_RDWR);
	if (fd < 0) die("open /dev/zero");
	unsigned char *z = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (z == MAP_FAILED) die("mmap z");
	for (int i = 0; i < 16; i += 2) wr(z, i, 3);
	mprotect(z, 16 * PG, PROT_NONE);                 /* ---s */
	unsigned char *m = mmap(NULL, 8 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) die("mmap m");
	for (int i = 0; i < 8; i++) wr(m, i, 4);
	mprotect(m + 4 * PG, 4 * PG, PROT_NONE);
	unsigned char *r = mmap(NULL, 8 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r == MAP_FAILED) die("mmap r");
	for (int i = 0; i < 8; i++) rd(r, i);             /* zero-page PTEs made PROT_NONE */
	mprotect(r, 8 * PG, PROT_NONE);
	WL("anon=%p swapped=%p devzero=%p shanon=%p zeropage=%p", a, s, z, m, r);
	mark_ready(wl_name);
	sleep_forever();
}

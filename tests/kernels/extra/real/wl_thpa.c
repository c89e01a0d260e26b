/* THP with enabled=always (run.sh sets it): a PMD-aligned anon region without madvise,
 * one byte written per 2 MiB; a PMD THP split into a partly mapped folio (munmap of its
 * tail); small regions that take multi-size THP (mTHP) when run.sh enabled an order;
 * shmem (MAP_SHARED|MAP_ANONYMOUS) with MADV_HUGEPAGE; a child after fork shares the
 * large folios. */
#include "wl_common.h"
#ifndef MADV_HUGEPAGE
#define MADV_HUGEPAGE 14
#endif
int main(void)
{
	wl_name = "thpa";
	unsigned long pmd = 2UL << 20;
	unsigned char *raw = mmap(NULL, 5 * pmd, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED) die("mmap");
	unsigned char *t = (unsigned char *)(((uintptr_t)raw + pmd - 1) & ~(pmd - 1));
	for (int i = 0; i < 4; i++) t[i * pmd] = 1;
	munmap(t + 3 * pmd + pmd / 2, pmd / 2);           /* the last THP: half unmapped (split PMD) */
	unsigned char *mt = mmap(NULL, 256 * 1024, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mt == MAP_FAILED) die("mmap mt");
	for (unsigned long o = 0; o < 256 * 1024; o += 64 * 1024) mt[o] = 2;
	munmap(mt + 224 * 1024, 16 * 1024);               /* a partly mapped mTHP folio, if any */
	unsigned char *sh = mmap(NULL, 2 * pmd, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) die("mmap sh");
	madvise(sh, 2 * pmd, MADV_HUGEPAGE);
	for (unsigned long o = 0; o < 2 * pmd; o += 4 * PG) sh[o] = 3;
	WL("thp=%p mthp=%p shmem=%p", t, mt, sh);
	pid_t c = fork();
	if (c == 0) {
		wl_name = "thpa_child";
		sink += t[0];
		WL("child");
		mark_ready("thpa_child");
		sleep_forever();
	}
	while (access("/run/ready.thpa_child", F_OK)) usleep(100000);
	t[pmd] = 9;                                        /* the parent's copy of the second THP */
	mark_ready(wl_name);
	sleep_forever();
}

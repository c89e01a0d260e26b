/* Swap entries made by process_madvise(MADV_PAGEOUT) of another process: a child writes
 * 256 pages (the first 64 shared COW with the parent, so their swap slots count twice)
 * and the parent pages out most of the child's range through a pidfd. */
#include "wl_common.h"
#include <sys/syscall.h>
#include <sys/uio.h>
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif
int main(void)
{
	wl_name = "pout";
	unsigned char *m = mmap(NULL, 256 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) die("mmap");
	for (int i = 0; i < 64; i++) wr(m, i, 1 + i);
	pid_t c = fork();
	if (c == 0) {
		wl_name = "pout_child";
		for (int i = 64; i < 256; i++) wr(m, i, i);
		WL("child map=%p", m);
		mark_ready("pout_child");
		sleep_forever();
	}
	while (access("/run/ready.pout_child", F_OK)) usleep(100000);
	int pfd = syscall(SYS_pidfd_open, c, 0);
	struct iovec iov[2] = { { m, 48 * PG }, { m + 96 * PG, 128 * PG } };
	long r = pfd < 0 ? -1 : syscall(SYS_process_madvise, pfd, iov, 2, MADV_PAGEOUT, 0);
	WL("map=%p child=%d process_madvise=%ld errno=%d", m, (int)c, r, r < 0 ? errno : 0);
	madvise(m + 32 * PG, 16 * PG, MADV_PAGEOUT);     /* the parent's own, some shared */
	mark_ready(wl_name);
	sleep_forever();
}

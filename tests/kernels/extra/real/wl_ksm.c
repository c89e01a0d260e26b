/* KSM: 64 pages of the same bytes and 64 distinct pages, MADV_MERGEABLE; run.sh starts
 * ksmd and waits for it to merge, then stops it (run=0 keeps the merged pages). A child
 * maps the same pages after fork (COW of KSM pages). */
#include "wl_common.h"
#ifndef MADV_MERGEABLE
#define MADV_MERGEABLE 12
#endif
int main(void)
{
	wl_name = "ksm";
	unsigned char *m = mmap(NULL, 160 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) die("mmap");
	for (int i = 0; i < 64; i++) memset(m + i * PG, 0x5a, PG);
	for (int i = 64; i < 128; i++) { memset(m + i * PG, 0, PG); snprintf((char *)m + i * PG, 32, "distinct %d", i); }
	for (int i = 128; i < 144; i++) memset(m + i * PG, 0x5a, PG);
	if (madvise(m, 160 * PG, MADV_MERGEABLE)) WL("madvise MADV_MERGEABLE failed errno=%d", errno);
	WL("map=%p", m);
	pid_t c = fork();
	if (c == 0) {
		wl_name = "ksm_child";
		WL("child");
		mark_ready("ksm_child");
		sleep_forever();
	}
	while (access("/run/ready.ksm_child", F_OK)) usleep(100000);
	mark_ready(wl_name);
	sleep_forever();
}

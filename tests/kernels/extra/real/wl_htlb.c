/* hugetlb: 2 MiB pages private (MAP_HUGETLB) and shared (a hugetlbfs file on /mnt/huge,
 * mapped by a child too: Shared_Hugetlb), a 1 GiB page of a file on /dev/hugepages
 * (hugetlbfs pagesize=1G, mounted by run.sh when the pool has a 1 GiB page), and a
 * MAP_HUGETLB|MAP_SHARED anonymous one. */
#include "wl_common.h"
#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif
#define MAP_HUGE_2MB (21U << MAP_HUGE_SHIFT)
int main(void)
{
	wl_name = "htlb";
	unsigned long hp = 2UL << 20, gp = 1UL << 30;
	unsigned char *p = mmap(NULL, 2 * hp, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB, -1, 0);
	if (p == MAP_FAILED) WL("private=FAILED errno=%d", errno);
	else { p[0] = 1; WL("private=%p (one of two pages touched)", p); }
	unsigned char *sa = mmap(NULL, hp, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB, -1, 0);
	if (sa == MAP_FAILED) WL("sharedanon=FAILED errno=%d", errno);
	else { sa[0] = 2; WL("sharedanon=%p", sa); }
	unsigned char *f = MAP_FAILED;
	int fd = open("/mnt/huge/wl_htlb", O_CREAT | O_RDWR, 0644);
	if (fd >= 0 && ftruncate(fd, hp) == 0) f = mmap(NULL, hp, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (f == MAP_FAILED) WL("file2m=FAILED errno=%d", errno);
	else { f[0] = 3; WL("file2m=%p", f); }
	unsigned char *g = MAP_FAILED;
	int gfd = open("/dev/hugepages/wl_htlb1g", O_CREAT | O_RDWR, 0644);
	if (gfd >= 0 && ftruncate(gfd, gp) == 0) g = mmap(NULL, gp, PROT_READ | PROT_WRITE, MAP_SHARED, gfd, 0);
	if (g == MAP_FAILED) WL("file1g=FAILED errno=%d", errno);
	else { g[0] = 4; g[gp - 1] = 5; WL("file1g=%p", g); }
	/* a private read-only mapping of the 2 MiB file (page cache page mapped privately) */
	unsigned char *fr = fd >= 0 ? mmap(NULL, hp, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
	if (fr != MAP_FAILED) { sink += fr[0]; WL("file2m_private_ro=%p", fr); }
	pid_t c = fork();
	if (c == 0) { /* the child keeps every mapping; the shared ones are mapped twice */
		wl_name = "htlb_child";
		if (f != MAP_FAILED) sink += f[0];
		if (g != MAP_FAILED) sink += g[0];
		if (sa != MAP_FAILED) sink += sa[0];
		WL("child");
		mark_ready("htlb_child");
		sleep_forever();
	}
	while (access("/run/ready.htlb_child", F_OK)) usleep(100000);
	mark_ready(wl_name);
	sleep_forever();
}

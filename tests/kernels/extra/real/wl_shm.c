/* SysV shared memory: a 64-page segment attached rw (half written) and read-only by a
 * child, and a SHM_HUGETLB segment of one 2 MiB page. */
#include "wl_common.h"
#include <sys/ipc.h>
#include <sys/shm.h>
int main(void)
{
	wl_name = "shm";
	int id = shmget(IPC_PRIVATE, 64 * PG, IPC_CREAT | 0600);
	if (id < 0) die("shmget");
	unsigned char *s = shmat(id, NULL, 0);
	if (s == (void *)-1) die("shmat");
	for (int i = 0; i < 32; i++) wr(s, i, 7);
	unsigned char *s2 = shmat(id, NULL, SHM_RDONLY);  /* the same segment twice */
	if (s2 != (void *)-1) for (int i = 0; i < 64; i += 4) rd(s2, i);
	int hid = shmget(IPC_PRIVATE, 2UL << 20, IPC_CREAT | SHM_HUGETLB | 0600);
	unsigned char *h = hid >= 0 ? shmat(hid, NULL, 0) : (void *)-1;
	if (h != (void *)-1) h[0] = 1;
	WL("shm=%p shm_ro=%p shm_huge=%p", s, s2, h);
	pid_t c = fork();
	if (c == 0) {
		wl_name = "shm_child";
		for (int i = 0; i < 16; i++) rd(s, i);
		WL("child");
		mark_ready("shm_child");
		sleep_forever();
	}
	while (access("/run/ready.shm_child", F_OK)) usleep(100000);
	mark_ready(wl_name);
	sleep_forever();
}
